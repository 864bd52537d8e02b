"""Byte-level finite automata: IR expression -> NFA -> DFA -> minimal DFA, and their algebra.

This is the automaton toolkit shared by the regex front-end (lookarounds and match semantics
need intersection and complement) and the automata layer (every grammar rule becomes a
minimal DFA). Besides bytes, edges may carry *call symbols*: non-negative integers that the
automata layer uses for rule references. Regular operations (complement, intersection...)
refuse automata with call symbols.

Pure Python on purpose (grammar/ imports no Numba); construction runs once per grammar.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
import threading
import time
from typing import Callable, Iterable, Mapping, Sequence

from ..errors import GrammarError
from .ir import (
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

#: Upper bound on NFA states built for one expression; past it construction stops with a
#: GrammarError instead of exhausting memory.
MAX_NFA_STATES = 2_000_000

_limits = threading.local()

_memo: "OrderedDict[Expr, Dfa]" = OrderedDict()
_memo_lock = threading.Lock()
_MEMO_MAX = 512


@contextlib.contextmanager
def limits(*, deadline: float | None = None, max_states: int | None = None):
    """Bounds every automaton construction of this thread inside the ``with`` block: past
    ``deadline`` (a ``time.monotonic()`` value) or ``max_states`` DFA states, construction
    stops with a GrammarError (a front-end's budget, so one input cannot run for minutes)."""
    old = getattr(_limits, "value", None)
    _limits.value = (deadline, max_states)
    try:
        yield
    finally:
        _limits.value = old


def _check_limits(n_states: int) -> None:
    value = getattr(_limits, "value", None)
    if value is None:
        return
    deadline, max_states = value
    if max_states is not None and n_states > max_states:
        raise GrammarError(f"automaton too large: more than {max_states} DFA states")
    if deadline is not None and time.monotonic() > deadline:
        raise GrammarError("automaton construction exceeds the time budget")


# --------------------------------------------------------------------------- UTF-8


def _encode(cp: int) -> bytes:
    return chr(cp).encode("utf-8", "surrogatepass")


def utf8_byte_sequences(ranges: Iterable[tuple[int, int]]) -> list[tuple[tuple[int, int], ...]]:
    """Byte-range sequences whose union is exactly the UTF-8 encodings of the code points in
    ``ranges`` (which must exclude surrogates). Each sequence is a tuple of (lo, hi) byte
    ranges, one per byte of the encoding."""
    out: list[tuple[tuple[int, int], ...]] = []
    for lo, hi in ranges:
        _utf8_split(lo, hi, out)
    return out


def _utf8_split(lo: int, hi: int, out: list) -> None:
    stack = [(lo, hi)]
    while stack:
        lo, hi = stack.pop()
        if lo > hi:
            continue
        for boundary in (0x7F, 0x7FF, 0xFFFF):
            if lo <= boundary < hi:
                stack.append((boundary + 1, hi))
                stack.append((lo, boundary))
                break
        else:
            if hi <= 0x7F:
                out.append(((lo, hi),))
                continue
            n = len(_encode(lo))
            for i in range(1, n):
                m = (1 << (6 * i)) - 1
                if (lo & ~m) != (hi & ~m):
                    if lo & m:
                        stack.append(((lo | m) + 1, hi))
                        stack.append((lo, lo | m))
                        break
                    if (hi & m) != m:
                        stack.append(((hi & ~m), hi))
                        stack.append((lo, (hi & ~m) - 1))
                        break
            else:
                a, b = _encode(lo), _encode(hi)
                out.append(tuple(zip(a, b)))


# --------------------------------------------------------------------------- NFA


class Nfa:
    """An epsilon-NFA under construction. States are ints; edges are kept per state."""

    __slots__ = ("eps", "edges", "calls", "limit")

    def __init__(self, limit: int = MAX_NFA_STATES):
        self.eps: list[list[int]] = []
        self.edges: list[list[tuple[int, int, int]]] = []  # (lo, hi, dst)
        self.calls: list[list[tuple[int, int]]] = []  # (symbol, dst)
        self.limit = limit

    def state(self) -> int:
        if len(self.eps) >= self.limit:
            raise GrammarError(
                f"automaton too large: more than {self.limit} states "
                "(a repetition count or a literal set is too big)"
            )
        self.eps.append([])
        self.edges.append([])
        self.calls.append([])
        return len(self.eps) - 1

    def build(
        self,
        expr: Expr,
        src: int,
        dst: int,
        call_symbol: Callable[[str], int | Expr] | None = None,
    ) -> None:
        """Adds states so that the paths from ``src`` to ``dst`` spell ``expr``.

        ``call_symbol(name)`` maps a rule reference either to a call symbol (an int) or to an
        expression to inline; without it a reference is an error.
        """
        _Builder(self, call_symbol).build(expr, src, dst)


class _Builder:
    def __init__(self, nfa: Nfa, call_symbol):
        self.nfa = nfa
        self.call_symbol = call_symbol
        self.inlining: list[str] = []

    def build(self, e: Expr, src: int, dst: int) -> None:
        nfa = self.nfa
        if isinstance(e, Empty):
            nfa.eps[src].append(dst)
        elif isinstance(e, Nothing):
            pass
        elif isinstance(e, Literal):
            cur = src
            data = e.data
            for i, b in enumerate(data):
                nxt = dst if i == len(data) - 1 else nfa.state()
                nfa.edges[cur].append((b, b, nxt))
                cur = nxt
        elif isinstance(e, ByteSet):
            for lo, hi in e.ranges:
                nfa.edges[src].append((lo, hi, dst))
        elif isinstance(e, CharSet):
            self._charset(e.ranges, src, dst)
        elif isinstance(e, Seq):
            cur = src
            for i, item in enumerate(e.items):
                nxt = dst if i == len(e.items) - 1 else nfa.state()
                self.build(item, cur, nxt)
                cur = nxt
        elif isinstance(e, Alt):
            for item in e.items:
                self.build(item, src, dst)
        elif isinstance(e, Repeat):
            self._repeat(e, src, dst)
        elif isinstance(e, Ref):
            self._ref(e, src, dst)
        elif isinstance(e, Automaton):
            self._automaton(e, src, dst)
        else:
            raise TypeError(f"not an IR expression: {e!r}")

    def _charset(self, ranges, src: int, dst: int) -> None:
        nfa = self.nfa
        # share the first byte states of sequences with equal prefixes (cheap trie)
        trie: dict[tuple, int] = {}
        for seq_ in utf8_byte_sequences(ranges):
            cur = src
            for i, rng in enumerate(seq_):
                if i == len(seq_) - 1:
                    nfa.edges[cur].append((rng[0], rng[1], dst))
                else:
                    key = seq_[: i + 1]
                    nxt = trie.get(key)
                    if nxt is None:
                        nxt = nfa.state()
                        trie[key] = nxt
                        nfa.edges[cur].append((rng[0], rng[1], nxt))
                    cur = nxt

    def _repeat(self, e: Repeat, src: int, dst: int) -> None:
        nfa = self.nfa
        cur = src
        for _ in range(e.min):
            nxt = nfa.state()
            self.build(e.item, cur, nxt)
            cur = nxt
        if e.max is None:
            loop = nfa.state()
            nfa.eps[cur].append(loop)
            back = nfa.state()
            self.build(e.item, loop, back)
            nfa.eps[back].append(loop)
            nfa.eps[loop].append(dst)
        else:
            for _ in range(e.max - e.min):
                nfa.eps[cur].append(dst)
                nxt = nfa.state()
                self.build(e.item, cur, nxt)
                cur = nxt
            nfa.eps[cur].append(dst)

    def _ref(self, e: Ref, src: int, dst: int) -> None:
        if self.call_symbol is None:
            raise GrammarError(f"rule reference {e.name!r} in a regular expression")
        target = self.call_symbol(e.name)
        if isinstance(target, int):
            self.nfa.calls[src].append((target, dst))
            return
        if e.name in self.inlining:
            cycle = " -> ".join(self.inlining + [e.name])
            raise GrammarError(f"recursive rule cannot be inlined into an automaton: {cycle}")
        self.inlining.append(e.name)
        try:
            self.build(target, src, dst)
        finally:
            self.inlining.pop()

    def _automaton(self, a: Automaton, src: int, dst: int) -> None:
        nfa = self.nfa
        ids = [nfa.state() for _ in a.edges]
        nfa.eps[src].append(ids[a.start])
        for s, edges in enumerate(a.edges):
            out = nfa.edges[ids[s]]
            for lo, hi, t in edges:
                out.append((lo, hi, ids[t]))
            if a.accepting[s]:
                nfa.eps[ids[s]].append(dst)


# --------------------------------------------------------------------------- DFA


class Dfa:
    """A deterministic automaton over bytes (and, optionally, call symbols).

    ``edges[s]`` is a tuple of disjoint ``(lo, hi, dst)`` byte ranges sorted by ``lo``;
    ``calls[s]`` a tuple of ``(symbol, dst)`` with distinct symbols; ``accepting[s]`` a bool.
    A missing transition goes to an implicit dead state. Instances are not mutated after
    construction.
    """

    __slots__ = ("start", "edges", "calls", "accepting")

    def __init__(self, start: int, edges, accepting, calls=None):
        self.start = start
        self.edges: list[tuple[tuple[int, int, int], ...]] = [tuple(e) for e in edges]
        self.accepting: list[bool] = [bool(a) for a in accepting]
        self.calls: list[tuple[tuple[int, int], ...]] = (
            [tuple(c) for c in calls] if calls is not None else [()] * len(self.edges)
        )

    @property
    def n_states(self) -> int:
        return len(self.edges)

    def __repr__(self) -> str:
        return f"Dfa({self.n_states} states)"

    # ----------------------------------------------------------------- construction

    @staticmethod
    def from_expr(expr: Expr, rules: Mapping[str, Expr] | None = None) -> "Dfa":
        """The minimal DFA of a regular expression. References are inlined from ``rules``
        (recursion is an error). Expressions without references are memoized process-wide
        (IR nodes are immutable, and formats, patterns and string lengths recur across
        schemas); the result must not be mutated."""
        if rules is None:
            with _memo_lock:
                hit = _memo.get(expr)
                if hit is not None:
                    _memo.move_to_end(expr)
                    return hit
            dfa = Dfa._build(expr, None)
            with _memo_lock:
                _memo[expr] = dfa
                if len(_memo) > _MEMO_MAX:
                    _memo.popitem(last=False)
            return dfa
        return Dfa._build(expr, rules)

    @staticmethod
    def _build(expr: Expr, rules: Mapping[str, Expr] | None) -> "Dfa":
        nfa = Nfa()
        src, dst = nfa.state(), nfa.state()

        def inline(name: str):
            if rules is None or name not in rules:
                raise GrammarError(f"undefined rule {name!r}")
            return rules[name]

        nfa.build(expr, src, dst, inline if rules is not None else None)
        return determinize(nfa, src, {dst}).minimize()

    @staticmethod
    def from_automaton(a: Automaton) -> "Dfa":
        return Dfa(a.start, a.edges, a.accepting)

    def to_expr(self, label: str = "automaton") -> Expr:
        """This DFA as an IR node (trimmed and minimized first)."""
        self._require_regular("to_expr")
        d = self.minimize()
        if not any(d.accepting):
            return Nothing()
        if d.n_states == 1 and not d.edges[0]:
            return Empty()
        return Automaton(d.start, tuple(d.edges), tuple(d.accepting), label)

    # ----------------------------------------------------------------- queries

    def step(self, s: int, b: int) -> int:
        for lo, hi, t in self.edges[s]:
            if lo <= b <= hi:
                return t
            if lo > b:
                break
        return -1

    def accepts(self, data: bytes) -> bool:
        s = self.start
        for b in data:
            s = self.step(s, b)
            if s < 0:
                return False
        return self.accepting[s]

    def is_empty(self) -> bool:
        return not any(self.accepting[s] for s in self._reachable())

    def _reachable(self) -> list[int]:
        seen = {self.start}
        stack = [self.start]
        while stack:
            s = stack.pop()
            for _, _, t in self.edges[s]:
                if t not in seen:
                    seen.add(t)
                    stack.append(t)
            for _, t in self.calls[s]:
                if t not in seen:
                    seen.add(t)
                    stack.append(t)
        return sorted(seen)

    def _require_regular(self, op: str) -> None:
        if any(self.calls):
            raise GrammarError(f"{op} is only defined for automata without rule calls")

    # ----------------------------------------------------------------- algebra

    def complete(self) -> "Dfa":
        """An equivalent DFA in which every state has a transition on every byte."""
        self._require_regular("complete")
        n = self.n_states
        dead = n
        edges = []
        for s in range(n + 1):
            src = self.edges[s] if s < n else ()
            out = []
            cur = 0
            for lo, hi, t in src:
                if lo > cur:
                    out.append((cur, lo - 1, dead))
                out.append((lo, hi, t))
                cur = hi + 1
            if cur <= 255:
                out.append((cur, 255, dead))
            edges.append(out)
        return Dfa(self.start, edges, self.accepting + [False])

    def complement(self) -> "Dfa":
        """The DFA of all byte strings this one rejects."""
        c = self.complete()
        return Dfa(c.start, c.edges, [not a for a in c.accepting]).minimize()

    def intersect(self, other: "Dfa") -> "Dfa":
        return _product(self, other, lambda a, b: a and b)

    def union(self, other: "Dfa") -> "Dfa":
        return _product(self, other, lambda a, b: a or b)

    def difference(self, other: "Dfa") -> "Dfa":
        return _product(self, other, lambda a, b: a and not b)

    def concat(self, other: "Dfa") -> "Dfa":
        self._require_regular("concat")
        other._require_regular("concat")
        nfa = Nfa()
        src, dst = nfa.state(), nfa.state()
        mid = nfa.state()
        nfa.build(self.to_expr(), src, mid)
        nfa.build(other.to_expr(), mid, dst)
        return determinize(nfa, src, {dst}).minimize()

    # ----------------------------------------------------------------- minimization

    def minimize(self) -> "Dfa":
        """The minimal equivalent DFA: unreachable and dead states removed, equivalent states
        merged (Hopcroft's algorithm over byte classes and call symbols)."""
        return _minimize(self)


def _trim(d: Dfa) -> tuple[list[int], dict[int, int]]:
    """States both reachable from the start and co-reachable to an accepting state."""
    reach = d._reachable()
    rev: dict[int, list[int]] = {s: [] for s in reach}
    for s in reach:
        for _, _, t in d.edges[s]:
            rev[t].append(s)
        for _, t in d.calls[s]:
            rev[t].append(s)
    live = {s for s in reach if d.accepting[s]}
    stack = list(live)
    while stack:
        t = stack.pop()
        for s in rev[t]:
            if s not in live:
                live.add(s)
                stack.append(s)
    keep = [s for s in reach if s in live]
    return keep, {s: i for i, s in enumerate(keep)}


#: From this many states on, minimization runs in the Numba kernel of the rule compiler.
KERNEL_MIN_STATES = 48


def _minimize(d: Dfa) -> Dfa:
    if d.n_states >= KERNEL_MIN_STATES:
        return _minimize_kernel(d)
    return _minimize_python(d)


def _minimize_kernel(d: Dfa) -> Dfa:
    """``_minimize`` through ``mask_kernels.dfa_kernels.build_min_dfa`` (the DFA handed over as
    an NFA: entry 0 to the start, accepting states to exit 1). Its canonical numbering is
    ``_minimize_python``'s: breadth first, bytes in order, then call symbols."""
    import numpy as np

    from ..mask_kernels.dfa_kernels import TOO_MANY_STATES, build_min_dfa

    n = d.n_states
    eps = [0, d.start + 2]
    edges: list[int] = []
    calls: list[int] = []
    for s in range(n):
        if d.accepting[s]:
            eps += (s + 2, 1)
        for lo, hi, t in d.edges[s]:
            edges += (s + 2, lo, hi, t + 2)
        for sym, t in d.calls[s]:
            calls += (s + 2, sym, t + 2)
    value = getattr(_limits, "value", None)
    max_states = value[1] if value is not None and value[1] is not None else 1 << 30
    empty = np.zeros(0, dtype=np.int32)
    status, _, trans, _, _, _, rows, acc_states, call_rows = build_min_dfa(
        n + 2, np.array(eps, dtype=np.int32), np.array(edges, dtype=np.int32),
        np.array(calls, dtype=np.int32), empty, np.zeros((1, 3), dtype=np.int64), empty, empty,
        empty, max_states)
    if status == TOO_MANY_STATES:
        raise GrammarError(f"automaton too large: more than {max_states} DFA states")
    m = trans.shape[0]
    out_edges: list[list] = [[] for _ in range(m)]
    out_calls: list[list] = [[] for _ in range(m)]
    acc = [False] * m
    r = rows.tolist()
    for i in range(0, len(r), 4):
        out_edges[r[i]].append((r[i + 1], r[i + 2], r[i + 3]))
    c = call_rows.tolist()
    for i in range(0, len(c), 3):
        out_calls[c[i]].append((c[i + 1], c[i + 2]))
    for a in acc_states.tolist():
        acc[a] = True
    _check_limits(m)
    return Dfa(0, out_edges, acc, out_calls)


def _minimize_python(d: Dfa) -> Dfa:
    keep, index = _trim(d)
    if not keep:
        return Dfa(0, [()], [False])
    n = len(keep)
    # Byte classes: split [0, 255] at every range boundary used by a kept state.
    cuts = {0, 256}
    syms: set[int] = set()
    for s in keep:
        for lo, hi, t in d.edges[s]:
            if t in index:
                cuts.add(lo)
                cuts.add(hi + 1)
        for sym, t in d.calls[s]:
            if t in index:
                syms.add(sym)
    bounds = sorted(cuts)
    class_lo = bounds[:-1]
    n_byte = len(class_lo)
    sym_list = sorted(syms)
    sym_col = {sym: n_byte + i for i, sym in enumerate(sym_list)}
    k = n_byte + len(sym_list)
    dead = n
    # dense transition table, completed with a dead state
    table = [[dead] * k for _ in range(n + 1)]
    import bisect

    for i, s in enumerate(keep):
        row = table[i]
        for lo, hi, t in d.edges[s]:
            j = index.get(t)
            if j is None:
                continue
            c = bisect.bisect_right(class_lo, lo) - 1
            while c < n_byte and class_lo[c] <= hi:
                row[c] = j
                c += 1
        for sym, t in d.calls[s]:
            j = index.get(t)
            if j is not None:
                row[sym_col[sym]] = j
    accepting = [d.accepting[s] for s in keep] + [False]
    block_of = _hopcroft(n + 1, k, table, accepting)
    # rebuild with one state per block (the dead block dropped)
    dead_block = block_of[dead]
    order: dict[int, int] = {}
    start_block = block_of[index[d.start]]
    # number blocks in BFS order from the start for stable, readable output
    queue = [start_block]
    order[start_block] = 0
    rep: dict[int, int] = {}
    for i in range(n):
        rep.setdefault(block_of[i], i)
    qi = 0
    while qi < len(queue):
        b = queue[qi]
        qi += 1
        row = table[rep[b]]
        for c in range(k):
            tb = block_of[row[c]]
            if tb != dead_block and tb not in order:
                order[tb] = len(order)
                queue.append(tb)
    m = len(order)
    edges: list[list] = [[] for _ in range(m)]
    calls: list[list] = [[] for _ in range(m)]
    acc = [False] * m
    for b, new in order.items():
        s = rep[b]
        acc[new] = accepting[s]
        row = table[s]
        out = edges[new]
        for c in range(n_byte):
            tb = block_of[row[c]]
            if tb == dead_block:
                continue
            t = order[tb]
            lo, hi = bounds[c], bounds[c + 1] - 1
            if out and out[-1][2] == t and out[-1][1] == lo - 1:
                out[-1] = (out[-1][0], hi, t)
            else:
                out.append((lo, hi, t))
        for sym in sym_list:
            tb = block_of[row[sym_col[sym]]]
            if tb != dead_block:
                calls[new].append((sym, order[tb]))
    return Dfa(0, edges, acc, calls)


def _hopcroft(n: int, k: int, table: list[list[int]], accepting: list[bool]) -> list[int]:
    """Partition refinement; returns the block id of every state."""
    inv: list[dict[int, list[int]]] = [dict() for _ in range(k)]
    for s in range(n):
        row = table[s]
        for c in range(k):
            inv[c].setdefault(row[c], []).append(s)
    finals = [s for s in range(n) if accepting[s]]
    others = [s for s in range(n) if not accepting[s]]
    blocks: list[set[int]] = []
    block_of = [0] * n
    for group in (finals, others):
        if group:
            bid = len(blocks)
            blocks.append(set(group))
            for s in group:
                block_of[s] = bid
    if len(blocks) == 1:
        work = [0]
    else:
        work = [0] if len(blocks[0]) <= len(blocks[1]) else [1]
    in_work = set(work)
    while work:
        a = work.pop()
        in_work.discard(a)
        splitter = list(blocks[a])
        for c in range(k):
            inv_c = inv[c]
            touched: dict[int, list[int]] = {}
            for t in splitter:
                preds = inv_c.get(t)
                if preds:
                    for s in preds:
                        touched.setdefault(block_of[s], []).append(s)
            for y, inter in touched.items():
                if len(inter) == len(blocks[y]):
                    continue
                new_states = set(inter)
                blocks[y] -= new_states
                nid = len(blocks)
                blocks.append(new_states)
                for s in new_states:
                    block_of[s] = nid
                if y in in_work:
                    work.append(nid)
                    in_work.add(nid)
                else:
                    pick = nid if len(new_states) <= len(blocks[y]) else y
                    work.append(pick)
                    in_work.add(pick)
    return block_of


# --------------------------------------------------------------------------- subset construction


def determinize(nfa: Nfa, start: int, finals: set[int], max_states: int = 1_000_000) -> Dfa:
    """Subset construction. The result is deterministic but not minimal."""
    eps = nfa.eps

    def closure(states: Iterable[int]) -> frozenset[int]:
        seen = set(states)
        stack = list(seen)
        while stack:
            s = stack.pop()
            for t in eps[s]:
                if t not in seen:
                    seen.add(t)
                    stack.append(t)
        return frozenset(seen)

    first = closure([start])
    ids: dict[frozenset[int], int] = {first: 0}
    subsets = [first]
    edges: list[list] = []
    calls: list[list] = []
    accepting: list[bool] = []
    i = 0
    while i < len(subsets):
        cur = subsets[i]
        i += 1
        if not i & 1023:
            _check_limits(len(subsets))
        accepting.append(not finals.isdisjoint(cur))
        # byte edges: sweep the range boundaries
        items = []
        for s in cur:
            items.extend(nfa.edges[s])
        out = []
        if items:
            points = sorted({lo for lo, _, _ in items} | {hi + 1 for _, hi, _ in items})
            for pi in range(len(points) - 1):
                lo, hi = points[pi], points[pi + 1] - 1
                targets = [t for a, b, t in items if a <= lo and hi <= b]
                if not targets:
                    continue
                tset = closure(targets)
                tid = ids.get(tset)
                if tid is None:
                    if len(subsets) >= max_states:
                        raise GrammarError(
                            f"automaton too large: more than {max_states} DFA states"
                        )
                    tid = len(subsets)
                    ids[tset] = tid
                    subsets.append(tset)
                if out and out[-1][2] == tid and out[-1][1] == lo - 1:
                    out[-1] = (out[-1][0], hi, tid)
                else:
                    out.append((lo, hi, tid))
        edges.append(out)
        by_sym: dict[int, list[int]] = {}
        for s in cur:
            for sym, t in nfa.calls[s]:
                by_sym.setdefault(sym, []).append(t)
        cl = []
        for sym in sorted(by_sym):
            tset = closure(by_sym[sym])
            tid = ids.get(tset)
            if tid is None:
                tid = len(subsets)
                ids[tset] = tid
                subsets.append(tset)
            cl.append((sym, tid))
        calls.append(cl)
    return Dfa(0, edges, accepting, calls)


def _product(a: Dfa, b: Dfa, keep: Callable[[bool, bool], bool]) -> Dfa:
    a._require_regular("product")
    b._require_regular("product")
    ac, bc = a.complete(), b.complete()
    ids = {(ac.start, bc.start): 0}
    pairs = [(ac.start, bc.start)]
    edges: list[list] = []
    accepting = []
    i = 0
    while i < len(pairs):
        x, y = pairs[i]
        i += 1
        if not i & 1023:
            _check_limits(len(pairs))
        accepting.append(keep(ac.accepting[x], bc.accepting[y]))
        out = []
        ea, eb = ac.edges[x], bc.edges[y]
        p = q = 0
        lo = 0
        while lo <= 255:
            while ea[p][1] < lo:
                p += 1
            while eb[q][1] < lo:
                q += 1
            hi = min(ea[p][1], eb[q][1])
            key = (ea[p][2], eb[q][2])
            tid = ids.get(key)
            if tid is None:
                tid = len(pairs)
                ids[key] = tid
                pairs.append(key)
            out.append((lo, hi, tid))
            lo = hi + 1
        edges.append(out)
    return Dfa(0, edges, accepting).minimize()


def dfa_union_all(dfas: Sequence[Dfa]) -> Dfa:
    """Union of several DFAs (through one NFA, cheaper than pairwise products)."""
    nfa = Nfa()
    src, dst = nfa.state(), nfa.state()
    for d in dfas:
        nfa.build(d.to_expr(), src, dst)
    return determinize(nfa, src, {dst}).minimize()
