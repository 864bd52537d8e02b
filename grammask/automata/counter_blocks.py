"""Counter blocks: large repetitions compiled as a counter over a small DFA, not unrolled.

``X{m,n}`` unrolled is ``n`` copies of X's automaton: a JSON string with ``maxLength: 5000``
would be tens of thousands of states, built and cached state by state. When X is regular,
cannot match the empty string, and is prefix-free (no word of X extends another, as with
one character or one escape sequence), the unrolled automaton is exactly "copy counter c,
state i of X": the kernels compute its transitions from X's DFA (see
:mod:`grammask.mask_kernels.earley`), and the mask cache shares entries between counters
that are equally far from the bounds.

The pass below moves each such repetition into a rule of its own; the rule's body stays the
original ``Repeat`` node, so the IR keeps its meaning for every other consumer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import GrammarError
from ..grammar.fsm import Dfa
from ..grammar.ir import (
    Alt,
    Automaton,
    ByteSet,
    CharSet,
    Expr,
    Grammar,
    Literal,
    Ref,
    Repeat,
    Seq,
    refs_of,
    rep,
)
from ..mask_kernels.earley import INNER_FINAL

#: Repetitions with a bound at least this large are candidates...
MIN_BOUND = 16
#: ...when unrolling would give at least this many states.
MIN_UNROLLED_STATES = 512

#: Only items up to about this many automaton states become blocks.
MAX_ITEM_SIZE = 256

BLOCK_PREFIX = "__gm_rep"


@dataclass(frozen=True)
class CounterBlock:
    """``item{min,max}`` (``max`` None: unbounded) where ``item`` has the prefix-free DFA
    ``dfa`` with one accepting state and no edge out of it."""

    dfa: Dfa
    min: int
    max: int | None

    def analysis_expr(self) -> Expr:
        """A small expression with the same emptiness and nullability, for rule analysis."""
        return rep(self.dfa.to_expr("counter block item"), min(self.min, 1), None)

    def inner_table(self, byte_class: np.ndarray, n_classes: int):
        """(i0, table int32[qq, n_classes], has_bytes int32[qq]) over the grammar's classes,
        with X's accepting state folded away (INNER_FINAL)."""
        d = self.dfa
        final = d.accepting.index(True)
        nonfinal = np.array([s for s in range(d.n_states) if s != final], dtype=np.int64)
        # each state's row: new numbers, the accepting state folded away, -1 kept (last)
        renum = np.full(d.n_states + 1, -1, dtype=np.int32)
        renum[nonfinal] = np.arange(len(nonfinal), dtype=np.int32)
        renum[final] = INNER_FINAL
        # the successor on each class: on its lowest byte (the classes cut the item's ranges)
        classes, first_byte = np.unique(byte_class, return_index=True)
        succ = np.full((len(nonfinal), n_classes), -1, dtype=np.int64)
        succ[:, classes] = _byte_steps(d)[nonfinal][:, first_byte]
        table = renum[succ]
        has_bytes = (table != -1).any(axis=1).astype(np.int32)
        return int(renum[d.start]), table, has_bytes


def extract_counter_blocks(grammar: Grammar) -> tuple[Grammar, dict[str, CounterBlock]]:
    """Moves every large repetition of a prefix-free regular item into a rule of its own.
    Returns the new grammar and the counter block of each such rule."""
    rules = dict(grammar.rules)
    blocks: dict[str, CounterBlock] = {}
    by_node: dict[Repeat, str] = {}
    recursive_cache: dict[str, bool] = {}

    done: dict[int, tuple[Expr, Expr]] = {}  # id(node) -> (node, result): the IR is a DAG

    def visit(e: Expr) -> Expr:
        t = type(e)
        if t is not Seq and t is not Alt and t is not Repeat:
            return e  # a leaf or a reference: nothing to rewrite
        if not _has_large_repeat(e):
            return e
        hit = done.get(id(e))
        if hit is not None and hit[0] is e:
            return hit[1]
        out = _visit(e, t)
        done[id(e)] = (e, out)
        return out

    def _visit(e: Expr, t) -> Expr:
        if t is Repeat:
            name = by_node.get(e)
            if name is not None:
                return Ref(name)
            block = _as_block(e, rules, recursive_cache)
            if block is not None:
                name = f"{BLOCK_PREFIX}{len(blocks)}"
                while name in rules:
                    name += "_"
                blocks[name] = block
                by_node[e] = name
                return Ref(name)
            inner = visit(e.item)
            return e if inner is e.item else Repeat(inner, e.min, e.max)
        items = e.items
        new = None
        for i, item in enumerate(items):
            v = visit(item)
            if v is not item:
                if new is None:
                    new = list(items)
                new[i] = v
        return e if new is None else t(tuple(new))

    changed = False
    for name in list(grammar.rules):
        body = grammar.rules[name]
        new = visit(body)
        if new is not body:
            rules[name] = new
            changed = True
    visit = _visit = None  # mutually recursive closures: a reference cycle otherwise
    if not changed:
        return grammar, {}
    for name in blocks:
        rules[name] = next(node for node, n in by_node.items() if n == name)
    return Grammar(rules, grammar.start), blocks


# Composite nodes without a repetition of MIN_BOUND or more (references not followed): no
# grammar turns anything in them into a block. For the whole process (nodes are immutable
# and shared, see ir.intern_node); bounded.
_LARGE: dict[Expr, bool] = {}
_LARGE_MAX = 1 << 16


def _has_large_repeat(e: Expr) -> bool:
    hit = _LARGE.get(e)
    if hit is not None:
        return hit
    # post-order without recursion (IR trees can be deep)
    stack = [(e, False)]
    while stack:
        x, ready = stack.pop()
        if x in _LARGE:
            continue
        kids = [k for k in ((x.item,) if type(x) is Repeat else x.items)
                if type(k) is Seq or type(k) is Alt or type(k) is Repeat]
        if not ready:
            stack.append((x, True))
            stack.extend((k, False) for k in kids if k not in _LARGE)
            continue
        large = type(x) is Repeat and (x.max if x.max is not None else x.min) >= MIN_BOUND
        if len(_LARGE) >= _LARGE_MAX:
            _LARGE.clear()
        _LARGE[x] = large or any(_LARGE.get(k, True) for k in kids)
    return _LARGE[e]


def _as_block(e: Repeat, rules, recursive_cache) -> CounterBlock | None:
    bound = e.max if e.max is not None else e.min
    if bound < MIN_BOUND:
        return None
    if _small_size(e.item, rules, MAX_ITEM_SIZE) is None:
        return None  # a large item: not the one-character kind of repetition blocks are for
    dfa = _item_dfa(e.item, rules)
    if dfa is None:
        return None  # not regular (a recursive reference), or too large
    if bound * dfa.n_states < MIN_UNROLLED_STATES:
        return None
    finals = [s for s in range(dfa.n_states) if dfa.accepting[s]]
    if len(finals) != 1 or dfa.accepting[dfa.start]:
        return None
    if dfa.edges[finals[0]]:
        return None  # not prefix-free
    return CounterBlock(dfa, e.min, e.max)


_STEPS: dict[int, tuple[Dfa, np.ndarray]] = {}


def _byte_steps(d: Dfa) -> np.ndarray:
    """int64[n_states, 256]: ``d``'s successor on every byte, -1 for none (memoized: the item
    automata are the toolkit's, shared across grammars)."""
    hit = _STEPS.get(id(d))
    if hit is not None and hit[0] is d:
        return hit[1]
    steps = np.full((d.n_states, 256), -1, dtype=np.int64)
    for s, edges in enumerate(d.edges):
        for lo, hi, t in edges:
            steps[s, lo:hi + 1] = t
    if len(_STEPS) >= 1024:
        _STEPS.clear()
    _STEPS[id(d)] = (d, steps)
    return steps


#: Item DFAs by (item, the rules it refers to), for every grammar of the process: the same
#: few items (a JSON string character, a whitespace byte) recur in nearly every schema.
_ITEM_DFAS: dict[tuple, Dfa | None] = {}
_ITEM_DFAS_MAX = 4096


def _item_dfa(item: Expr, rules) -> Dfa | None:
    """The minimal DFA of ``item`` (references inlined), or None when it is not regular or
    too large. ``item`` is small (``_small_size`` accepted it), so keying on it and on the
    bodies of the rules it reaches is cheap."""
    names: set[str] = set()
    stack = [item]
    while stack:
        for r in refs_of(stack.pop()):
            if r not in names and r in rules:
                names.add(r)
                stack.append(rules[r])
    key = (item, tuple(sorted((n, rules[n]) for n in names)))
    try:
        return _ITEM_DFAS[key]
    except KeyError:
        pass
    try:
        dfa = Dfa.from_expr(item, rules)
    except GrammarError:
        dfa = None
    if len(_ITEM_DFAS) >= _ITEM_DFAS_MAX:
        _ITEM_DFAS.clear()
    _ITEM_DFAS[key] = dfa
    return dfa


def _small_size(e: Expr, rules, limit: int, seen: frozenset = frozenset()) -> int | None:
    """A rough size of ``e`` (references inlined), or None once it exceeds ``limit`` or meets
    a recursive reference."""
    if isinstance(e, Literal):
        n = len(e.data)
    elif isinstance(e, (ByteSet, CharSet)):
        n = 1 + len(e.ranges)
    elif isinstance(e, Automaton):
        n = len(e.accepting)
    elif isinstance(e, (Seq, Alt)):
        n = 1
        for item in e.items:
            k = _small_size(item, rules, limit - n, seen)
            if k is None:
                return None
            n += k
    elif isinstance(e, Repeat):
        k = _small_size(e.item, rules, limit, seen)
        if k is None:
            return None
        n = 1 + k * max(1, e.max if e.max is not None else e.min + 1)
    elif isinstance(e, Ref):
        if e.name in seen or e.name not in rules:
            return None
        return _small_size(rules[e.name], rules, limit, seen | {e.name})
    else:
        n = 1
    return n if n <= limit else None
