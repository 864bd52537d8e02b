"""IR expression -> canonical minimal byte DFA (with call edges), as flat arrays.

:func:`rule_dfa` is the per-rule step of :mod:`grammask.automata.rule_automata`: it walks the
expression once in Python, emitting a flat epsilon-NFA, and hands it to one Numba kernel
(:func:`grammask.mask_kernels.dfa_kernels.nfa_to_min_dfa`) for subset construction,
minimization and canonical numbering. :func:`rule_dfa_reference` computes the same thing with
the pure-Python toolkit of :mod:`grammask.grammar.fsm` (slow; kept as the test oracle and
for benchmarks).

The Python walk is the part that costs, so it avoids repeated work:
- UTF-8 expansions of character sets are computed once per set, process-wide;
- a sub-expression that is emitted many times (the item of a repetition, a rule inlined at
  many places) is first reduced to its own minimal DFA (a *fragment*), which is then copied
  with numpy, all copies at once;
- fragments of expressions without rule references are kept in a process-wide LRU, so the
  pieces every JSON schema has (strings, numbers, whitespace) are built once per process.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from ..errors import GrammarError
from ..grammar import fsm
from ..grammar.ir import (
    Alt,
    Automaton,
    ByteSet,
    CharSet,
    Empty,
    Expr,
    Literal,
    Nothing,
    Ref,
    Repeat,
    Seq,
)
from ..mask_kernels.dfa_kernels import TOO_MANY_STATES, nfa_to_min_dfa

#: Limits of one rule's construction (the same as the Python toolkit's).
MAX_NFA_STATES = fsm.MAX_NFA_STATES
MAX_DFA_STATES = 1_000_000

#: Process-wide cache of fragments of reference-free expressions (entries, not bytes).
FRAGMENT_CACHE_SIZE = 512

CallSymbol = Callable[[str], "int | Expr"]

_I32 = np.int32


class RuleDfa:
    """A canonical minimal DFA over bytes and call symbols.

    State 0 is the start; states are numbered breadth first (successors in byte order, then
    call symbols in increasing order), so two automata with the same language have equal
    arrays. ``bounds`` cuts the bytes into classes (class c is ``bounds[c]..bounds[c+1]-1``);
    ``trans[s, c]`` is the successor on class c or -1; ``calls[s, j]`` the successor after a
    call of rule ``call_syms[j]`` or -1. An empty language is one rejecting state.
    Immutable by convention (fragments are shared across grammars).
    """

    __slots__ = ("_rows", "accept", "bounds", "call_syms", "calls", "trans")

    def __init__(self, bounds, trans, accept, call_syms, calls):
        self.bounds = bounds  # int32[k+1]
        self.trans = trans  # int32[n, k]
        self.accept = accept  # bool[n]
        self.call_syms = call_syms  # int32[j], increasing
        self.calls = calls  # int32[n, j]
        self._rows = None

    @property
    def n_states(self) -> int:
        return self.trans.shape[0]

    def __repr__(self) -> str:
        return f"RuleDfa({self.n_states} states, {len(self.call_syms)} call symbols)"

    def byte_table(self) -> np.ndarray:
        """int32[n, 256]: the successor of every state on every byte (-1: none)."""
        cls = np.repeat(np.arange(len(self.bounds) - 1), np.diff(self.bounds))
        return self.trans[:, cls]

    def same_as(self, other: RuleDfa) -> bool:
        """Equal languages (canonical forms are compared; byte classes may differ)."""
        return (
            self.n_states == other.n_states
            and np.array_equal(self.accept, other.accept)
            and np.array_equal(self.call_syms, other.call_syms)
            and np.array_equal(self.calls, other.calls)
            and np.array_equal(self.byte_table(), other.byte_table())
        )

    def edge_rows(self):
        """(edges int32[m, 4] as (src, lo, hi, dst) with adjacent classes merged, accepting
        states, calls int32[mc, 3] as (src, symbol, dst)); computed once."""
        if self._rows is None:
            self._rows = _edge_rows(self)
        return self._rows


def _edge_rows(d: RuleDfa):
    k = d.trans.shape[1]
    flat = d.trans.ravel()
    idx = np.flatnonzero(flat >= 0)
    s, c, t = idx // k, idx % k, flat[idx]
    run = np.ones(len(idx), dtype=bool)
    run[1:] = ~((s[1:] == s[:-1]) & (c[1:] == c[:-1] + 1) & (t[1:] == t[:-1]))
    first = np.flatnonzero(run)
    last = np.append(first[1:], len(idx)) - 1 if len(first) else first
    bounds = d.bounds
    edges = np.stack([s[first], bounds[c[first]], bounds[c[last] + 1] - 1, t[first]], axis=1)
    cs, cj = np.nonzero(d.calls >= 0)
    calls = np.stack([cs, d.call_syms[cj], d.calls[cs, cj]], axis=1)
    return (edges.astype(_I32), np.flatnonzero(d.accept).astype(_I32), calls.astype(_I32))


# --------------------------------------------------------------------------- public entry


def rule_dfa(expr: Expr, call_symbol: CallSymbol | None = None,
             memo: dict | None = None) -> RuleDfa:
    """The canonical minimal DFA of ``expr``.

    ``call_symbol(name)`` maps a rule reference to a call symbol (an int: the reference
    becomes a call edge) or to the rule's expression (inlined); without it a reference is an
    error. ``memo`` (a dict the caller keeps for one grammar, with one ``call_symbol``)
    shares the fragments of inlined rules between the rules of that grammar.
    Raises GrammarError for recursive inlining and automata past the size limits.
    """
    nfa = _Nfa()
    _Builder(nfa, call_symbol, memo if memo is not None else {}).build(expr, 0, 1)
    return nfa.minimal_dfa()


def rule_dfa_reference(expr: Expr, call_symbol: CallSymbol | None = None) -> RuleDfa:
    """:func:`rule_dfa` through the pure-Python toolkit (:mod:`grammask.grammar.fsm`)."""
    nfa = fsm.Nfa()
    src, dst = nfa.state(), nfa.state()
    nfa.build(expr, src, dst, call_symbol)
    return rule_dfa_from_fsm(fsm.determinize(nfa, src, {dst}).minimize())


def rule_dfa_from_fsm(d: fsm.Dfa) -> RuleDfa:
    """Converts a *minimized* :class:`grammask.grammar.fsm.Dfa` (start 0, breadth-first
    numbering, as ``Dfa.minimize`` returns) to arrays."""
    cuts = {0, 256}
    syms: set[int] = set()
    for edges in d.edges:
        for lo, hi, _ in edges:
            cuts.add(lo)
            cuts.add(hi + 1)
    for calls in d.calls:
        syms.update(sym for sym, _ in calls)
    bounds = np.array(sorted(cuts), dtype=_I32)
    call_syms = np.array(sorted(syms), dtype=_I32)
    col = {sym: j for j, sym in enumerate(call_syms.tolist())}
    n = d.n_states
    trans = np.full((n, len(bounds) - 1), -1, dtype=_I32)
    calls = np.full((n, len(call_syms)), -1, dtype=_I32)
    for s in range(n):
        for lo, hi, t in d.edges[s]:
            a = int(np.searchsorted(bounds, lo, side="right")) - 1
            b = int(np.searchsorted(bounds, hi, side="right")) - 1
            trans[s, a:b + 1] = t
        for sym, t in d.calls[s]:
            calls[s, col[sym]] = t
    return RuleDfa(bounds, trans, np.array(d.accepting, dtype=bool), call_syms, calls)


def dfa_without_calls(d: RuleDfa, keep_sym) -> RuleDfa:
    """``d`` with the call edges of the symbols for which ``keep_sym(sym)`` is false removed,
    minimized again."""
    keep = np.array([bool(keep_sym(int(s))) for s in d.call_syms], dtype=bool)
    if keep.all():
        return d
    nfa = _Nfa()
    nfa.embed(d, 0, 1, keep_call=keep)
    return nfa.minimal_dfa()


def clear_fragment_cache() -> None:
    """Forgets the process-wide fragments (for tests and benchmarks)."""
    _FRAGMENTS.clear()
    _UTF8_TEMPLATES.clear()


# --------------------------------------------------------------------------- the flat NFA


class _Nfa:
    """An epsilon-NFA under construction: state 0 is the entry, state 1 the exit.

    Small pieces are appended to flat Python lists; fragments are added as numpy blocks.
    """

    __slots__ = ("blocks", "calls", "edges", "eps", "n")

    def __init__(self):
        self.n = 2
        self.eps: list[int] = []  # src, dst, src, dst...
        self.edges: list[int] = []  # src, lo, hi, dst...
        self.calls: list[int] = []  # src, symbol, dst...
        self.blocks: list[tuple] = []  # (eps[.,2], edges[.,4], calls[.,3]) numpy blocks

    def new_states(self, count: int) -> int:
        first = self.n
        self.n += count
        if self.n > MAX_NFA_STATES:
            raise GrammarError(
                f"automaton too large: more than {MAX_NFA_STATES} states "
                "(a repetition count or a literal set is too big)"
            )
        return first

    def embed(self, d: RuleDfa, srcs, dsts, keep_call=None) -> None:
        """Adds one copy of ``d`` from ``srcs[i]`` to ``dsts[i]`` for every i (scalars: one)."""
        edges, acc, calls = d.edge_rows()
        if keep_call is not None:
            calls = calls[keep_call[np.searchsorted(d.call_syms, calls[:, 1])]]
        srcs = np.atleast_1d(np.asarray(srcs, dtype=np.int64))
        dsts = np.atleast_1d(np.asarray(dsts, dtype=np.int64))
        copies, n = len(srcs), d.n_states
        offs = self.new_states(copies * n) + n * np.arange(copies, dtype=np.int64)
        e = np.tile(edges.astype(np.int64), (copies, 1))
        shift = np.repeat(offs, len(edges))
        e[:, 0] += shift
        e[:, 3] += shift
        c = np.tile(calls.astype(np.int64), (copies, 1))
        shift = np.repeat(offs, len(calls))
        c[:, 0] += shift
        c[:, 2] += shift
        eps = np.concatenate([
            np.stack([srcs, offs], axis=1),
            np.stack([(offs[:, None] + acc[None, :]).ravel(),
                      np.repeat(dsts, len(acc))], axis=1),
        ])
        self.blocks.append((eps, e, c))

    def arrays(self):
        eps = [np.array(self.eps, dtype=np.int64).reshape(-1, 2)]
        edges = [np.array(self.edges, dtype=np.int64).reshape(-1, 4)]
        calls = [np.array(self.calls, dtype=np.int64).reshape(-1, 3)]
        for be, bd, bc in self.blocks:
            eps.append(be)
            edges.append(bd)
            calls.append(bc)
        return np.concatenate(eps), np.concatenate(edges), np.concatenate(calls)

    def minimal_dfa(self) -> RuleDfa:
        eps, edges, calls = self.arrays()
        call_syms, col = np.unique(calls[:, 1], return_inverse=True)
        status, bounds, trans, accept, call_tab = nfa_to_min_dfa(
            self.n, 0, 1,
            eps[:, 0].astype(_I32), eps[:, 1].astype(_I32),
            edges[:, 0].astype(_I32), edges[:, 1].astype(_I32), edges[:, 2].astype(_I32),
            edges[:, 3].astype(_I32),
            calls[:, 0].astype(_I32), col.reshape(-1).astype(_I32), calls[:, 2].astype(_I32),
            len(call_syms), MAX_DFA_STATES,
        )
        if status == TOO_MANY_STATES:
            raise GrammarError(f"automaton too large: more than {MAX_DFA_STATES} DFA states")
        return RuleDfa(bounds, trans, accept.astype(bool), call_syms.astype(_I32), call_tab)


# --------------------------------------------------------------------------- UTF-8 templates

_UTF8_TEMPLATES: dict[tuple, tuple[int, list[int]]] = {}


def _utf8_template(ranges: tuple) -> tuple[int, list[int]]:
    """A character set as NFA edges: (number of inner states, flat (src, lo, hi, dst) list)
    with src/dst 0 the entry, 1 the exit and 2.. the inner states. Sequences that share a
    first byte range share a state (a small trie)."""
    tpl = _UTF8_TEMPLATES.get(ranges)
    if tpl is not None:
        return tpl
    trie: dict[tuple, int] = {}
    out: list[int] = []
    n_inner = 0
    for seq_ in fsm.utf8_byte_sequences(ranges):
        cur = 0
        last = len(seq_) - 1
        for i, (lo, hi) in enumerate(seq_):
            if i == last:
                out += (cur, lo, hi, 1)
            else:
                key = seq_[: i + 1]
                nxt = trie.get(key)
                if nxt is None:
                    nxt = 2 + n_inner
                    n_inner += 1
                    trie[key] = nxt
                    out += (cur, lo, hi, nxt)
                cur = nxt
    if len(_UTF8_TEMPLATES) > 4096:
        _UTF8_TEMPLATES.clear()
    tpl = _UTF8_TEMPLATES[ranges] = (n_inner, out)
    return tpl


# --------------------------------------------------------------------------- fragments

_FRAGMENTS: OrderedDict = OrderedDict()


def _cached_fragment(expr: Expr) -> RuleDfa:
    """The minimal DFA of a reference-free expression, from the process-wide LRU."""
    d = _FRAGMENTS.get(expr)
    if d is not None:
        _FRAGMENTS.move_to_end(expr)
        return d
    d = rule_dfa(expr)
    _FRAGMENTS[expr] = d
    if len(_FRAGMENTS) > FRAGMENT_CACHE_SIZE:
        _FRAGMENTS.popitem(last=False)
    return d


def _is_leaf(e: Expr) -> bool:
    """Expressions cheaper to emit directly than to copy as a fragment."""
    if isinstance(e, (Literal, ByteSet, Empty, Nothing)):
        return True
    if isinstance(e, CharSet):
        return e.ranges[-1][1] < 0x80
    return False


# --------------------------------------------------------------------------- the walk


class _Builder:
    def __init__(self, nfa: _Nfa, call_symbol: CallSymbol | None, memo: dict):
        self.nfa = nfa
        self.call_symbol = call_symbol
        self.memo = memo
        self.inlining: list[str] = []

    def build(self, e: Expr, src: int, dst: int) -> None:
        nfa = self.nfa
        t = type(e)
        if t is Literal:
            data = e.data
            cur = src
            last = len(data) - 1
            first = nfa.new_states(last)
            out = nfa.edges
            for i, b in enumerate(data):
                nxt = dst if i == last else first + i
                out += (cur, b, b, nxt)
                cur = nxt
        elif t is Seq:
            items = e.items
            last = len(items) - 1
            first = nfa.new_states(last)
            cur = src
            for i, item in enumerate(items):
                nxt = dst if i == last else first + i
                self.build(item, cur, nxt)
                cur = nxt
        elif t is Alt:
            for item in e.items:
                self.build(item, src, dst)
        elif t is Ref:
            self._ref(e, src, dst)
        elif t is ByteSet:
            out = nfa.edges
            for lo, hi in e.ranges:
                out += (src, lo, hi, dst)
        elif t is CharSet:
            self._charset(e.ranges, src, dst)
        elif t is Repeat:
            self._repeat(e, src, dst)
        elif t is Empty:
            nfa.eps += (src, dst)
        elif t is Nothing:
            pass
        elif t is Automaton:
            self._automaton(e, src, dst)
        else:
            raise TypeError(f"not an IR expression: {e!r}")

    def _charset(self, ranges, src: int, dst: int) -> None:
        nfa = self.nfa
        n_inner, tpl = _utf8_template(ranges)
        base = nfa.new_states(n_inner) - 2
        out = nfa.edges
        for i in range(0, len(tpl), 4):
            a, lo, hi, b = tpl[i:i + 4]
            out += (src if a == 0 else a + base, lo, hi,
                    dst if b == 1 else (src if b == 0 else b + base))

    def _repeat(self, e: Repeat, src: int, dst: int) -> None:
        nfa = self.nfa
        item, lo, hi = e.item, e.min, e.max
        copies = lo + 1 if hi is None else hi
        frag = None if _is_leaf(item) or copies < 2 else self._fragment(item)
        # junctions j[0] = src, j[1..copies]: copy i runs from j[i] to j[i+1]
        n_j = lo if hi is None else hi
        first = nfa.new_states(n_j) if n_j else 0
        junction = [src] + list(range(first, first + n_j))
        if hi is None:
            loop = nfa.new_states(2)
            back = loop + 1
            nfa.eps += (junction[-1], loop, back, loop, loop, dst)
            starts, ends = junction[:-1] + [loop], junction[1:] + [back]
        else:
            for j in junction[lo:]:
                nfa.eps += (j, dst)
            starts, ends = junction[:-1], junction[1:]
        if frag is not None:
            nfa.embed(frag, starts, ends)
        else:
            for a, b in zip(starts, ends):
                self.build(item, a, b)

    def _fragment(self, e: Expr) -> RuleDfa | None:
        """The minimal DFA of ``e`` to copy, or None to emit ``e`` directly."""
        key = ("expr", e)
        d = self.memo.get(key)
        if d is None:
            if _has_refs(e):
                d = self._sub_dfa(e)
            else:
                d = _cached_fragment(e)
            self.memo[key] = d
        return d

    def _sub_dfa(self, e: Expr) -> RuleDfa:
        sub = _Nfa()
        b = _Builder(sub, self.call_symbol, self.memo)
        b.inlining = self.inlining
        b.build(e, 0, 1)
        return sub.minimal_dfa()

    def _ref(self, e: Ref, src: int, dst: int) -> None:
        if self.call_symbol is None:
            raise GrammarError(f"rule reference {e.name!r} in a regular expression")
        target = self.call_symbol(e.name)
        if isinstance(target, int):
            self.nfa.calls += (src, target, dst)
            return
        if e.name in self.inlining:
            cycle = " -> ".join(self.inlining + [e.name])
            raise GrammarError(f"recursive rule cannot be inlined into an automaton: {cycle}")
        if _is_leaf(target):
            self.build(target, src, dst)
            return
        key = ("rule", e.name)
        d = self.memo.get(key)
        if d is None:
            self.inlining.append(e.name)
            try:
                d = self._sub_dfa(target) if _has_refs(target) else _cached_fragment(target)
            finally:
                self.inlining.pop()
            self.memo[key] = d
        self.nfa.embed(d, src, dst)

    def _automaton(self, a: Automaton, src: int, dst: int) -> None:
        nfa = self.nfa
        base = nfa.new_states(len(a.edges))
        nfa.eps += (src, base + a.start)
        out = nfa.edges
        for s, edges in enumerate(a.edges):
            for lo, hi, t in edges:
                out += (base + s, lo, hi, base + t)
            if a.accepting[s]:
                nfa.eps += (base + s, dst)


def _has_refs(e: Expr) -> bool:
    stack = [e]
    while stack:
        x = stack.pop()
        t = type(x)
        if t is Ref:
            return True
        if t is Seq or t is Alt:
            stack.extend(x.items)
        elif t is Repeat:
            stack.append(x.item)
    return False
