"""Grammar IR -> one minimal byte DFA per rule -> the flat arrays the kernels read.

Rules that are not recursive and not too large are inlined into their callers, so that most
grammars become a handful of DFAs (a JSON Schema without recursion is often one DFA); the
rest stay rules, and their references become call edges that the Earley kernels follow.
After construction, rules that derive no string are removed (with the call edges that lead
to them), so every state the parser can reach leads to a sentence: the masks never allow a
token after which the grammar cannot be finished.

The steps: rule analysis (which rules to keep), one canonical minimal DFA per kept rule
(:func:`grammask.automata.dfa_build.rule_dfa`, a Numba kernel), productive and nullable rules
(:func:`grammask.mask_kernels.dfa_kernels.derivable`), then the layout of all rule DFAs in one
table (:func:`grammask.mask_kernels.dfa_kernels.layout_rules`) packed by ``pack_grammar``.
Bounded runs of one-byte characters (JSON's whitespace) are one edge in the rule DFAs and
virtual states in the table (see ``_Runs``), not a chain of states at every use.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import GrammarError
from ..grammar.ir import refs_of
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
    RowsAutomaton,
    Seq,
)
from ..mask_kernels.dfa_kernels import derivable, layout_rules, split_runs
from ..mask_kernels.earley import (
    F_ACCEPT,
    F_BYTES,
    F_CALLS,
    pack_grammar,
)
from .counter_blocks import CounterBlock, extract_counter_blocks
from .dfa_build import (
    GrammarDfas,
    RuleDfa,
    RunCall,
    dfa_without_calls,
    rule_dfa_reference,
    sequence_ends,
)

#: A rule whose estimated automaton size is at most this is inlined wherever it is used.
#: (256 inlined an open object's extra-property rule, ~200 by the estimate, at each of its
#: uses: 5 copies of a 44-state DFA in the caller; called, it is one DFA. MaskBench, grammask
#: alone, 2 runs each: time to first mask p50 2.21-2.25 -> 2.03-2.13 ms, mask p50/p99 alike.)
INLINE_SMALL = 128
#: A rule used once is inlined up to this estimated size.
INLINE_ONCE = 50_000
#: A rule that calls no other rule (a lexeme: a string with excluded values, a formatted
#: string...) is inlined up to this estimated size, wherever it is used: as a called rule it
#: would cost an Earley item and a completion at every byte where it may end, and the mask
#: cache could not walk it as a plain DFA; inlined it only costs states.
INLINE_LEAF = 8192
#: ...or when its minimal DFA has at most this many states (see _small_big_leaves).
INLINE_LEAF_STATES = 4096
#: An inlined rule that is a possibly empty run of one-byte characters, at least this long
#: (and at most RUN_LONGEST), is a run: one edge in the DFAs, virtual states in the tables.
RUN_SHORTEST = 4
RUN_LONGEST = 1024


@dataclass(frozen=True)
class RuleAutomata:
    """The compiled form of a grammar: per-rule DFAs numbered into one global state space."""

    rule_names: tuple[str, ...]  # rule index -> name
    start_rule: int
    blob: np.ndarray  # the packed int32 arrays (see mask_kernels.earley)
    n_states: int
    n_classes: int
    byte_class: np.ndarray  # uint8/int32[256]
    state_base: np.ndarray  # rule index -> first global state


def build_rule_automata(grammar: Grammar, *, method: str = "fast",
                        runs: bool = True) -> RuleAutomata:
    """Compiles ``grammar`` into rule DFAs. Raises GrammarError for undefined rules, a grammar
    whose language is empty, or automata past the size limits.

    ``method="reference"`` builds each rule's DFA with the pure-Python toolkit instead of the
    Numba kernels (same result, slower; for tests and benchmarks). ``runs=False`` writes out
    bounded runs of one-byte characters as states (see ``_Runs``; the reference method always
    does): the same language, more table states.
    """
    if method not in ("fast", "reference"):
        raise ValueError(f"unknown method {method!r}")
    grammar, blocks = extract_counter_blocks(grammar)
    rules = grammar.rules
    analysis = _Analysis(grammar, set(blocks))
    keep = analysis.kept()
    use_runs = runs and method == "fast"
    # big leaves get their runs as edges too, on symbols above every rule's for now
    early = _Runs(rules if use_runs else {}, set(keep), len(rules) + 1)
    single_use = {n for n, k in analysis.copies.items() if k <= 1}
    big_leaves = _small_big_leaves(grammar, keep, set(blocks), early, single_use)
    if big_leaves:
        keep = analysis.kept(set(big_leaves))

    index = {name: i for i, name in enumerate(keep)}
    runs = _Runs(rules if use_runs else {}, set(keep), len(keep))
    if early.index != runs.index:
        big_leaves = {}
    elif early.index:
        renum = {early.n_rules + j: runs.n_rules + j for j in range(len(early.max))}
        big_leaves = {name: _renumber_calls(d, renum) for name, d in big_leaves.items()}

    def call_symbol(ref_name: str):
        i = index.get(ref_name)
        if i is not None:
            return i
        j = runs.index.get(ref_name)
        return RunCall(runs.n_rules + j) if j is not None else rules[ref_name]

    builder = GrammarDfas(call_symbol, single_use=single_use)
    plain: list[GrammarDfas] = []  # a builder without runs, made when first needed

    def written_out(name: str) -> RuleDfa:
        """The DFA of rule ``name`` with its runs written out (they cannot stay edges)."""
        if not plain:
            plain.append(GrammarDfas(lambda n: index[n] if n in index else rules[n],
                                     single_use=single_use))
        return plain[0].rule_dfa(rules[name])

    for name, dfa in big_leaves.items():
        # built by _small_big_leaves with every reference inlined: what inlining gives here
        builder.memo[rules[name]] = dfa
    dfas: list[RuleDfa] = []
    for name in keep:
        try:
            if name in blocks:
                # a stand-in with the item's bytes, productivity and nullability; the block's
                # own states are virtual (pack_grammar)
                stand_in = blocks[name].analysis_expr()
                dfas.append(builder.rule_dfa(stand_in) if method == "fast"
                            else rule_dfa_reference(stand_in, call_symbol))
            elif method == "fast":
                d = builder.rule_dfa(rules[name])
                dfas.append(d if runs.split(d) is not None else written_out(name))
            else:
                dfas.append(rule_dfa_reference(rules[name], call_symbol))
        except GrammarError as exc:
            raise GrammarError(f"in rule {name!r}: {exc}") from None

    start = index[grammar.start]
    tables, run_edges = _layout(dfas, runs)
    productive = _derivable(tables, use_bytes=True)
    if not productive[start]:
        raise GrammarError(
            f"the grammar's language is empty: start rule {grammar.start!r} derives no string"
        )
    if not productive.all():
        n_rules = runs.n_rules

        def trimmed(i: int, d: RuleDfa) -> RuleDfa:
            d = dfa_without_calls(d, lambda sym: sym >= n_rules or productive[sym])
            if runs.split(d) is None:  # minimized again, its runs may no longer fit
                d = dfa_without_calls(written_out(keep[i]), lambda sym: productive[sym])
            return d

        dfas = [trimmed(i, d) for i, d in enumerate(dfas)]
    # keep only rules still reachable from the start through live call edges
    live = _live_rules(dfas, start, runs.n_rules)
    names = tuple(keep[i] for i in live)
    if len(live) < len(dfas) or not productive.all():
        renum = {old: new for new, old in enumerate(live)}
        for j in range(len(runs.max)):
            renum[runs.n_rules + j] = len(live) + j
        dfas = [_renumber_calls(dfas[i], renum) for i in live]
        runs.n_rules = len(live)
        start = renum[start]
        tables, run_edges = _layout(dfas, runs)
    return _assemble(names, start, tables, blocks, runs, run_edges)


# --------------------------------------------------------------------------- rule analysis


def _small_big_leaves(grammar: Grammar, keep: list[str], blocks: set[str],
                      runs: _Runs, single_use=frozenset()) -> dict[str, RuleDfa]:
    """Kept rules that call nothing (once their callees are inlined) whose size estimate was
    too large to inline but whose minimal DFA is small: the estimate counts NFA states, and
    some expressions (a string excluding a list of keys, spelled with every JSON escape) have
    NFAs a hundred times their DFA. Returns their DFAs (every reference inlined but those to
    ``runs``, which are run edges where they fit)."""
    kept = set(keep)
    rules = grammar.rules
    out: dict[str, RuleDfa] = {}

    def call_symbol(name: str):
        j = runs.index.get(name)
        return rules[name] if j is None else RunCall(runs.n_rules + j)

    builder = GrammarDfas(call_symbol, single_use=single_use, share_all=True)
    plain = None
    for name in keep[1:]:
        if name in blocks or name == grammar.start:
            continue
        body = rules[name]
        if _calls_kept(body, rules, kept):
            continue
        try:
            dfa = builder.rule_dfa(body)
            if runs.split(dfa) is None:
                plain = plain or GrammarDfas(rules.__getitem__)
                dfa = plain.rule_dfa(body)
        except GrammarError:
            continue  # recursive through inlining, or too large
        if dfa.n_states <= INLINE_LEAF_STATES:
            out[name] = dfa
    return out


def _calls_kept(body, rules, kept: set[str]) -> bool:
    """Whether ``body``, with non-kept rules inlined, refers to a kept rule."""
    seen: set[str] = set()
    stack = [body]
    while stack:
        for r in refs_of(stack.pop()):
            if r in kept:
                return True
            if r not in seen:
                seen.add(r)
                stack.append(rules[r])
    return False


class _Analysis:
    """The reference graph of a grammar's reachable rules, walked once: ``uses`` counts the
    references to every reachable rule, :meth:`kept` chooses the rules to keep."""

    def __init__(self, grammar: Grammar, always_kept: set[str] = frozenset()):
        self.grammar = grammar
        self.shapes: dict[str, _Shape] = {}
        self.reachable = _reachable_rules(grammar, self.shapes)
        self.recursive = _recursive_rules(
            self.reachable, {name: sh.refs for name, sh in self.shapes.items()})
        self.recursive |= always_kept
        self.uses: dict[str, int] = dict.fromkeys(self.reachable, 0)
        self.copies: dict[str, int] = dict.fromkeys(self.reachable, 0)
        for shape in self.shapes.values():
            for r, k in shape.uses.items():
                self.uses[r] += k
            for r, k in shape.copies.items():
                self.copies[r] += k

    def kept(self, always_inlined: set[str] = frozenset()) -> list[str]:
        """The rules to keep (the start first, then breadth first); the ``always_kept``
        rules are never inlined, ``always_inlined`` ones always are."""
        return _choose_kept_rules(self.grammar, self.reachable, self.recursive, self.shapes,
                                  self.uses, always_inlined)


@dataclass
class _Shape:
    """What the rule analysis needs of a rule body, from one walk over it."""

    refs: list[str]  # the rules it refers to, sorted
    uses: dict[str, int]  # how many references to each
    copies: dict[str, int]  # how many copies of each its automaton holds (see _walk_shape)
    # size estimate (a rough count of NFA states) = const + sum(coef[r] * size of r)
    const: float
    coef: dict[str, float]


# Shapes and sizes of nodes, for the whole process: nodes are immutable and the helpers
# that build them share equal ones (ir.intern_node), so the rules every JSON schema has (any
# value, strings) are analysed once. Bounded like the intern table.
_SHAPES: dict = {}
_SIZES: dict = {}
_MEMO_MAX = 1 << 16


def _shape(e: Expr) -> _Shape:
    """The shape of ``e`` (memoized)."""
    shape = _SHAPES.get(e)
    if shape is None:
        if len(_SHAPES) >= _MEMO_MAX:
            _SHAPES.clear()
        shape = _SHAPES[e] = _walk_shape(e)
    return shape


def _walk_shape(e: Expr) -> _Shape:
    """The shape of ``e``, walked as a tree; the size of a reference-free composite node is
    computed once (see _pure_size: the IR is a DAG whose shared parts, like a string's
    escape spellings, are reference-free).

    An alternative that is another one's last item ("p R | R": an optional object property,
    see dfa_build.sequence_ends) is one copy of R in the automaton: the copies count it once; the uses and the size estimate, which choose the rules kept, twice
    (counted once, more rules are inlined: measured, a 58 ms mask on a MaskBench schema)."""
    const = 0.0
    coef: dict[str, float] = {}
    uses: dict[str, int] = {}
    copies: dict[str, int] = {}
    stack = [(e, 1.0, False)]
    while stack:
        x, m, shared = stack.pop()
        t = type(x)
        if t is Ref:
            name = x.name
            uses[name] = uses.get(name, 0) + 1
            coef[name] = coef.get(name, 0.0) + m
            if not shared:
                copies[name] = copies.get(name, 0) + 1
            continue
        size = _pure_size(x)
        if size is not None:
            const += m * size
            continue
        const += m  # composite nodes that refer to rules: walked
        if t is Repeat:
            stack.append((x.item, m * _times(x), shared))
        elif t is Alt and not shared:
            ends = sequence_ends(x.items)
            stack.extend((i, m, bool(ends) and type(i) is not Seq and i in ends)
                         for i in x.items)
        else:
            stack.extend((i, m, shared) for i in x.items)
    return _Shape(sorted(uses), uses, copies, const, coef)


def _times(r: Repeat) -> int:
    """How many copies of its item a repetition counts for in the size estimate."""
    return max(r.max if r.max is not None else r.min + 1, 1)


def _pure_size(e: Expr) -> float | None:
    """The size estimate of ``e`` when it refers to no rule, else None (memoized for
    composite nodes)."""
    t = type(e)
    if t is Literal:
        return float(len(e.data))
    if t is Ref:
        return None
    if t is CharSet:
        return float(1 + len(e.ranges))
    if t is Automaton or t is RowsAutomaton:
        return float(len(e.accepting))  # states (edges may be made on demand)
    if t is not Seq and t is not Alt and t is not Repeat:
        return 1.0
    hit = _SIZES.get(e)
    if hit is not None:
        return None if hit < 0 else hit
    if t is Repeat:
        inner = _pure_size(e.item)
        size = None if inner is None else 1.0 + inner * _times(e)
    else:
        size = 1.0
        for item in e.items:
            inner = _pure_size(item)
            if inner is None:
                size = None
                break
            size += inner
    if len(_SIZES) >= _MEMO_MAX:
        _SIZES.clear()
    _SIZES[e] = -1.0 if size is None else size
    return size


def _reachable_rules(grammar: Grammar, shapes: dict[str, _Shape]) -> list[str]:
    """Rules reachable from the start, breadth first; fills ``shapes`` for each of them."""
    rules = grammar.rules
    order = [grammar.start]
    seen = {grammar.start}
    i = 0
    while i < len(order):
        name = order[i]
        i += 1
        shapes[name] = _shape(rules[name])
        for r in shapes[name].refs:
            if r not in rules:
                raise GrammarError(f"rule {name!r} refers to undefined rule {r!r}")
            if r not in seen:
                seen.add(r)
                order.append(r)
    return order


def _recursive_rules(names: list[str], graph: dict[str, list[str]]) -> set[str]:
    """Rules that lie on a cycle of the reference graph (Tarjan's SCC, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: set[str] = set()
    counter = 0
    for root in names:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            v, pi = work.pop()
            if pi == 0:
                index[v] = low[v] = counter
                counter += 1
                stack.append(v)
                on_stack.add(v)
            succ = graph[v]
            if pi < len(succ):
                work.append((v, pi + 1))
                w = succ[pi]
                if w not in index:
                    work.append((w, 0))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1 or v in graph[v]:
                    out.update(comp)
    return out


def _choose_kept_rules(grammar: Grammar, reachable: list[str], recursive: set[str],
                       shapes: dict[str, _Shape], uses: dict[str, int],
                       always_inlined: set[str] = frozenset()) -> list[str]:
    """The rules that stay rules; the others are inlined into their callers: the small ones,
    and the ones used once that are not too large (sizes estimated with inlined callees)."""
    inline: dict[str, float] = {}  # inlined rule -> its estimated size

    # decide callees before callers (post-order of the reference graph)
    for name in _post_order(grammar.start, {n: sh.refs for n, sh in shapes.items()}):
        if name == grammar.start or name in recursive:
            continue
        shape = shapes[name]
        s = shape.const + sum(k * inline.get(r, 1.0) for r, k in shape.coef.items())
        leaf = all(r in inline for r in shape.refs)  # calls nothing once inlined
        if s <= INLINE_SMALL or (uses[name] <= 1 and s <= INLINE_ONCE) or (
                leaf and s <= INLINE_LEAF) or name in always_inlined:
            inline[name] = s
    return [n for n in reachable if n not in inline]


def _post_order(start: str, refs: dict[str, list[str]]) -> list[str]:
    order: list[str] = []
    seen = {start}
    work = [(start, iter(refs[start]))]
    while work:
        name, it = work[-1]
        for r in it:
            if r not in seen:
                seen.add(r)
                work.append((r, iter(refs[r])))
                break
        else:
            work.pop()
            order.append(name)
    return order


def _derivable(t: _Tables, use_bytes: bool) -> np.ndarray:
    """bool[n_rules]: which rules derive some string (``use_bytes``) or the empty string."""
    e_src, e_dst = (t.edge_src, t.edge_dst) if use_bytes else (_NO_EDGES, _NO_EDGES)
    return derivable(t.trans.shape[0], t.flags & F_ACCEPT, t.call_ptr, t.call_rule,
                     t.call_dst, t.rule_start, e_src, e_dst).astype(bool)


_NO_EDGES = np.zeros(0, dtype=np.int64)


def _live_rules(dfas: list[RuleDfa], start: int, n_rules: int) -> list[int]:
    seen = {start}
    order = [start]
    i = 0
    while i < len(order):
        d = dfas[order[i]]
        i += 1
        used = d.call_syms[(d.calls >= 0).any(axis=0)]
        for sym in used.tolist():
            if sym < n_rules and sym not in seen:  # (symbols from n_rules on are runs)
                seen.add(sym)
                order.append(sym)
    return sorted(order)


def _renumber_calls(d: RuleDfa, renum: dict[int, int]) -> RuleDfa:
    if not len(d.call_syms):
        return d
    # renumbering keeps the order of the live rules, so the columns stay sorted
    syms = np.array([renum[s] for s in d.call_syms.tolist()], dtype=np.int32)
    return RuleDfa(d.bounds, d.trans, d.accept, syms, d.calls)


# --------------------------------------------------------------------------- runs


_NO_TAG = np.zeros(256, dtype=np.int32)


class _Runs:
    """Runs: inlined rules that are a possibly empty run of at most ``n`` one-byte characters
    (JSON's ``ws``: ``[ \t\n\r]{0,20}``). Each reference is built as "nothing, or one edge on
    the run's call symbol" (symbols from ``n_rules`` on; see dfa_build.RunCall), so a DFA has
    one state before and one after each run instead of ``n + 1``; the tables then lead the
    state before into virtual states "c bytes read, then the state after"
    (mask_kernels.earley, "Runs").

    That is exact when the state before has no edge on the run's bytes but the run's (it has
    the state after's other edges already: the run may be empty), and the state after has
    none on them and no run of its own, so a run byte always continues the run. A rule whose
    DFA breaks this (a run right after a run, say) is built without runs."""

    def __init__(self, rules: dict, kept: set[str], n_rules: int):
        self.n_rules = n_rules
        self.index: dict[str, int] = {}
        self.max: list[int] = []
        ranges = []
        for name, body in rules.items():
            if name in kept or type(body) is not Repeat or body.min != 0 or body.max is None \
                    or not RUN_SHORTEST <= body.max <= RUN_LONGEST:
                continue
            item = body.item
            if type(item) not in (CharSet, ByteSet) or not item.ranges \
                    or item.ranges[-1][1] >= 0x80:
                continue
            self.index[name] = len(self.max)
            self.max.append(body.max)
            ranges.append(item.ranges)
        # byte_sets: bool[n_runs, 256]; tag: for the layout, bytes of different runs (or of
        # none) never share a class
        self.byte_sets, self.tag = _run_byte_sets(tuple(ranges))
        self._split: dict[int, tuple] = {}  # id(dfa) -> (dfa, split(dfa))

    def split(self, d: RuleDfa):
        """``d`` without its run edges, its byte classes cut at the runs' bytes, and those
        edges as (state before, run, state after) arrays; (d, None) without run edges; None
        when one cannot stay an edge (see the class). Kept on ``d`` (immutable)."""
        hit = self._split.get(id(d))
        if hit is not None and hit[0] is d:
            return hit[1]
        if not self.max:
            out = (d, None)
        else:
            status, bounds, trans, rows, src, run, dst = split_runs(
                d.bounds, d.trans, d.calls, d.call_syms, d.call_rows, self.n_rules,
                self.byte_sets)
            # the run symbols are the last call columns; byte edges and accepting states as
            # rows do not depend on the classes
            k = int(np.searchsorted(d.call_syms, self.n_rules))
            out = (None if status < 0 else (d, None) if status > 0
                   else (RuleDfa(bounds, trans, d.accept, d.call_syms[:k], d.calls[:, :k],
                                 d.rows, d.acc_states, rows), (src, run, dst)))
        self._split[id(d)] = (d, out)
        return out


_RUN_SETS: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def _run_byte_sets(ranges: tuple) -> tuple[np.ndarray, np.ndarray]:
    """(bool[n_runs, 256] the runs' bytes, int32[256] a tag per byte, equal for bytes in the
    same runs) for the runs' byte ranges; memoized (grammars of one kind have the same runs:
    JSON's whitespace). Not to be written to."""
    hit = _RUN_SETS.get(ranges)
    if hit is not None:
        return hit
    sets = np.zeros((len(ranges), 256), dtype=np.bool_)
    for j, rs in enumerate(ranges):
        for lo, hi in rs:
            sets[j, lo:hi + 1] = True
    tag = _NO_TAG
    if ranges:
        # the bytes' membership columns, numbered by first appearance
        ids: dict[bytes, int] = {}
        tag = np.array([ids.setdefault(col.tobytes(), len(ids)) for col in sets.T],
                       dtype=np.int32)
    if len(_RUN_SETS) >= 256:
        _RUN_SETS.clear()
    _RUN_SETS[ranges] = (sets, tag)
    return sets, tag


# --------------------------------------------------------------------------- assembly


@dataclass
class _Tables:
    """The rule DFAs numbered into one state space over shared byte classes: the arrays that
    pack_grammar stores."""

    base: np.ndarray  # int64[n_rules + 1]: first state of each rule (and the total)
    byte_class: np.ndarray  # int32[256]
    trans: np.ndarray  # int32[n_states, n_classes]
    flags: np.ndarray  # int32[n_states]
    rule_of: np.ndarray  # int32[n_states]
    call_ptr: np.ndarray  # int32[n_states + 1]
    call_rule: np.ndarray  # int32[n_calls]
    call_dst: np.ndarray  # int32[n_calls]
    rule_start: np.ndarray  # int32[n_rules]
    # the byte edges as (source, target) lists, one per merged range (for the Horn passes:
    # a few per state where the table has one entry per class)
    edge_src: np.ndarray  # int64[n_edges]
    edge_dst: np.ndarray  # int64[n_edges]


def _layout(dfas: list[RuleDfa], runs: _Runs) -> tuple[_Tables, tuple | None]:
    """The tables of ``dfas`` with their run edges taken out, and those edges as global
    (state, run, state after the run) arrays (None: no run edge)."""
    split = [runs.split(d) for d in dfas]
    dfas = [d for d, _ in split]
    sizes = np.array([d.n_states for d in dfas], dtype=np.int64)
    base = np.zeros(len(dfas) + 1, dtype=np.int64)
    np.cumsum(sizes, out=base[1:])
    edges = [(e[0] + base[r], e[1], e[2] + base[r]) for r, (_, e) in enumerate(split)
             if e is not None]
    run_edges = (tuple(np.concatenate([e[k] for e in edges]) for k in range(3))
                 if edges else None)
    n_states = int(base[-1])
    if n_states >= 2**31 - 1:
        raise GrammarError("grammar too large: more than 2**31 automaton states")

    byte_class, trans, has_bytes, call_ptr, call_rule, call_dst = layout_rules(
        sizes,
        np.array([d.trans.shape[1] for d in dfas], dtype=np.int64),
        np.concatenate([d.trans.ravel() for d in dfas]),
        np.concatenate([d.bounds for d in dfas]),
        np.concatenate([d.call_rows for d in dfas]),
        np.array([len(d.call_rows) // 3 for d in dfas], dtype=np.int64),
        runs.tag if run_edges is not None else _NO_TAG,
    )
    accept = np.concatenate([d.accept for d in dfas])
    rows = np.concatenate([d.rows for d in dfas]).reshape(-1, 4)
    shift = np.repeat(base[:-1], [len(d.rows) // 4 for d in dfas])
    flags = (np.where(accept, F_ACCEPT, 0) | np.where(has_bytes, F_BYTES, 0)
             | np.where(np.diff(call_ptr) > 0, F_CALLS, 0)).astype(np.int32)
    return _Tables(
        base=base,
        byte_class=byte_class,
        trans=trans,
        flags=flags,
        rule_of=np.repeat(np.arange(len(dfas), dtype=np.int32), sizes),
        call_ptr=call_ptr,
        call_rule=call_rule,
        call_dst=call_dst,
        rule_start=base[:-1].astype(np.int32),  # every rule DFA starts at its state 0
        edge_src=rows[:, 0] + shift,
        edge_dst=rows[:, 3] + shift,
    ), run_edges


def _assemble(names: tuple[str, ...], start_rule: int, t: _Tables,
              blocks: dict[str, CounterBlock] | None = None, runs: _Runs | None = None,
              run_edges: tuple | None = None) -> RuleAutomata:
    nullable = _derivable(t, use_bytes=False).astype(np.int32)
    n_classes = t.trans.shape[1]
    block_rows = []
    for r, name in enumerate(names):
        block = (blocks or {}).get(name)
        if block is not None:
            i0, inner, has_bytes = block.inner_table(t.byte_class, n_classes)
            unbounded = block.max is None
            n = block.min if unbounded else block.max
            block_rows.append((r, block.min, n, unbounded, i0, inner, has_bytes))
    run_blocks = None if run_edges is None else (*run_edges, runs.max, runs.byte_sets)
    try:
        blob = _pack(t, nullable, start_rule, block_rows, run_blocks)
    except OverflowError as exc:
        raise GrammarError(f"grammar too large: {exc}") from None
    return RuleAutomata(
        rule_names=names,
        start_rule=start_rule,
        blob=blob,
        n_states=t.trans.shape[0],
        n_classes=n_classes,
        byte_class=t.byte_class,
        state_base=t.base.astype(np.int32),
    )


def _pack(t: _Tables, nullable: np.ndarray, start_rule: int, block_rows: list,
          run_blocks: tuple | None = None) -> np.ndarray:
    return pack_grammar(
        t.byte_class,
        t.trans,
        t.flags,
        t.rule_of,
        t.call_ptr,
        t.call_rule,
        t.call_dst,
        t.rule_start,
        nullable,
        start_rule,
        block_rows,
        run_blocks,
    )
