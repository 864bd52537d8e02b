"""IR expression -> canonical minimal byte DFA (with call edges), as flat arrays.

:func:`rule_dfa` is the per-rule step of :mod:`grammask.automata.rule_automata`: it walks the
expression once in Python, emitting a flat epsilon-NFA, and hands it to one Numba kernel
(:func:`grammask.mask_kernels.dfa_kernels.build_min_dfa`) for subset construction,
minimization and canonical numbering. :func:`rule_dfa_reference` computes the same thing with
the pure-Python toolkit of :mod:`grammask.grammar.fsm` (slow; kept as the test oracle and
for benchmarks).

The Python walk costs more than the kernel, so it avoids repeated work:
- UTF-8 expansions of character sets are computed once per set, process-wide;
- a sub-expression emitted several times (the item of a repetition, a rule inlined at
  several places) is first reduced to its own minimal DFA (a *fragment*); the NFA records
  each copy as four integers and the kernel writes the copies out;
- fragments are kept in a process-wide LRU, so the pieces every JSON schema has (strings,
  numbers, any JSON value) are built once per process: a reference-free expression keyed by
  itself, one with references by itself and how each name it reaches resolves (symbols as
  ranks, renamed for each grammar; tried from an expression's second appearance on);
- a rule inlined at one place only is emitted in place (no fragment: its states would be
  determinized twice).
"""

from __future__ import annotations

import threading
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
    RowsAutomaton,
    Seq,
    refs_of,
)
from ..mask_kernels.dfa_kernels import TOO_MANY_STATES, build_min_dfa

#: Limits of one rule's construction (the same as the Python toolkit's).
MAX_NFA_STATES = fsm.MAX_NFA_STATES
MAX_DFA_STATES = 1_000_000

#: Size of the process-wide cache of DFAs of reference-free expressions.
FRAGMENT_CACHE_BYTES = 32 << 20
#: A reference-free alternation of at least this many items is copied in as a fragment.
ALT_FRAGMENT = 8

CallSymbol = Callable[[str], "int | RunCall | Expr"]


class RunCall:
    """What a call-symbol function returns for a rule built as a *run* (see
    :mod:`grammask.automata.rule_automata`): the reference becomes "nothing, or one edge on
    call symbol ``sym``", the edge standing for one to ``max`` of the run's bytes."""

    __slots__ = ("sym",)

    def __init__(self, sym: int):
        self.sym = sym

_I32 = np.int32


class RuleDfa:
    """A canonical minimal DFA over bytes and call symbols.

    State 0 is the start; states are numbered breadth first (successors in byte order, then
    call symbols in increasing order), so two automata with the same language have equal
    arrays. ``bounds`` cuts the bytes into classes (class c is ``bounds[c]..bounds[c+1]-1``);
    ``trans[s, c]`` is the successor on class c or -1; ``calls[s, j]`` the successor after a
    call of rule ``call_syms[j]`` or -1. An empty language is one rejecting state.
    ``rows``, ``acc_states`` and ``call_rows`` hold the same automaton as flat lists (edges
    as src, lo, hi, dst; calls as src, symbol, dst) for copying into NFAs.
    Immutable by convention (fragments are shared across grammars).
    """

    __slots__ = ("acc_states", "accept", "bounds", "call_rows", "call_syms", "calls", "rows",
                 "trans")

    def __init__(self, bounds, trans, accept, call_syms, calls, rows=None, acc_states=None,
                 call_rows=None):
        self.bounds = bounds  # int32[k+1]
        self.trans = trans  # int32[n, k]
        self.accept = accept  # bool[n]
        self.call_syms = call_syms  # int32[j], increasing
        self.calls = calls  # int32[n, j]
        if rows is None:
            rows, acc_states, call_rows = _rows_of(self)
        self.rows = rows
        self.acc_states = acc_states
        self.call_rows = call_rows

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


def _rows_of(d: RuleDfa):
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
    return (edges.astype(_I32).ravel(), np.flatnonzero(d.accept).astype(_I32),
            calls.astype(_I32).ravel())


# --------------------------------------------------------------------------- public entry


def rule_dfa(expr: Expr, call_symbol: CallSymbol | None = None) -> RuleDfa:
    """The canonical minimal DFA of ``expr``.

    ``call_symbol(name)`` maps a rule reference to a call symbol (an int: the reference
    becomes a call edge) or to the rule's expression (inlined); without it a reference is an
    error. Raises GrammarError for recursive inlining and automata past the size limits.
    """
    return GrammarDfas(call_symbol).rule_dfa(expr)


class GrammarDfas:
    """:func:`rule_dfa` for the rules of one grammar, sharing the DFAs of sub-expressions
    between them. ``single_use`` names inlined rules referenced once in the grammar: they
    are emitted in place rather than reduced to a DFA of their own first."""

    def __init__(self, call_symbol: CallSymbol | None, single_use=frozenset(),
                 share_all: bool = False):
        self.call_symbol = call_symbol
        self.single_use = single_use
        # every fragment with references goes to the process-wide LRU, not only those met
        # before (see _Builder._shared_fragment): for a builder whose fragments another
        # builder of the same grammar will want (rule_automata's big-leaf check)
        self.share_all = share_all
        self.memo: dict[Expr, RuleDfa] = {}  # by value
        self.by_id: dict[int, tuple[Expr, RuleDfa]] = {}  # by identity: no hashing of trees

    def rule_dfa(self, expr: Expr) -> RuleDfa:
        return _Builder(_Nfa(), self).fragment(expr)

    def resolution(self, e: Expr) -> tuple[tuple, np.ndarray] | None:
        """What the DFA of ``e`` depends on besides ``e`` itself: how every rule name it
        reaches (through the rules it inlines) resolves. Returns (key, symbols): the key
        holds ``e`` and, by name, the inlined expression or the rank of the call symbol among
        ``symbols`` (the call symbols reached, increasing), so that grammars numbering their
        rules differently share it. None when a name does not resolve (the build reports
        it)."""
        if self.call_symbol is None:
            return None
        resolved: dict[str, object] = {}
        stack = [e]
        try:
            while stack:
                for name in refs_of(stack.pop()):
                    if name not in resolved:
                        target = resolved[name] = self.call_symbol(name)
                        if isinstance(target, Expr):
                            stack.append(target)
        except (KeyError, GrammarError):  # an undefined rule: the build reports it
            return None
        syms = sorted(t if isinstance(t, int) else t.sym for t in resolved.values()
                      if not isinstance(t, Expr))
        rank = {sym: i for i, sym in enumerate(syms)}
        sig = tuple(sorted(
            (name, t if isinstance(t, Expr) else ("run", rank[t.sym]) if type(t) is RunCall
             else rank[t]) for name, t in resolved.items()))
        return ("rule", e, sig), np.array(syms, dtype=_I32)


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
    calls = d.call_rows.reshape(-1, 3).astype(np.int64)
    calls = calls[keep[np.searchsorted(d.call_syms, calls[:, 1])]]
    edges = d.rows.reshape(-1, 4).astype(np.int64)
    nfa = _Nfa()
    first = nfa.new_states(d.n_states)
    edges[:, [0, 3]] += first
    calls[:, [0, 2]] += first
    nfa.edges = edges.ravel().tolist()
    nfa.calls = calls.ravel().tolist()
    nfa.eps = [0, first] + [x for a in d.acc_states.tolist() for x in (first + a, 1)]
    return nfa.minimal_dfa()


def clear_fragment_cache() -> None:
    """Forgets the process-wide fragments (for tests and benchmarks)."""
    global _fragment_bytes
    with _FRAGMENTS_LOCK:
        _FRAGMENTS.clear()
        _fragment_bytes = 0
        _SEEN.clear()
    _UTF8_TEMPLATES.clear()


# --------------------------------------------------------------------------- the flat NFA


class _Nfa:
    """An epsilon-NFA under construction: state 0 is the entry, state 1 the exit.

    Edges go to flat Python lists; a copy of a fragment (a RuleDfa) is recorded as four ints
    and written out by the kernel.
    """

    __slots__ = ("blocks", "calls", "copies", "copy_at", "edges", "eps", "frag_index", "frags",
                 "n", "utf8_at")

    def __init__(self):
        self.n = 2
        self.eps: list[int] = []  # src, dst, src, dst...
        self.edges: list[int] = []  # src, lo, hi, dst...
        self.blocks: list[np.ndarray] = []  # more edges, as int32 arrays (automata)
        self.calls: list[int] = []  # src, symbol, dst...
        self.copies: list[int] = []  # fragment, entry, exit, first state...
        self.frags: list[RuleDfa] = []
        self.frag_index: dict[int, int] = {}
        self.copy_at: dict[tuple[int, int], int] = {}  # (fragment, exit) -> first state
        self.utf8_at: dict[tuple, int] = {}  # (multi-byte ranges, exit) -> inner state base

    def new_states(self, count: int) -> int:
        first = self.n
        self.n += count
        if self.n > MAX_NFA_STATES:
            raise GrammarError(
                f"automaton too large: more than {MAX_NFA_STATES} states "
                "(a repetition count or a literal set is too big)"
            )
        return first

    def embed(self, d: RuleDfa, src: int, dst: int) -> None:
        """Adds a copy of ``d`` from ``src`` to ``dst``. A copy already leading to ``dst`` is
        entered instead: its states belong to it alone, so its start accepts L(d) up to
        ``dst`` whoever enters it (the escape spellings at every node of a key trie, all
        followed by the same junction, become one copy, not one each for the subset
        construction to multiply and the minimization to merge)."""
        f = self.frag_index.get(id(d))
        if f is None:
            f = self.frag_index[id(d)] = len(self.frags)
            self.frags.append(d)
        start = self.copy_at.get((f, dst))
        if start is not None:
            self.eps += (src, start)
            return
        start = self.new_states(d.n_states)
        self.copy_at[(f, dst)] = start
        self.copies += (f, src, dst, start)

    def minimal_dfa(self) -> RuleDfa:
        frags = self.frags
        if self.copies == [0, 0, 1, 2] and not (self.eps or self.edges or self.calls
                                                 or self.blocks):
            return frags[0]  # exactly one fragment: already minimal
        ptr = np.zeros((len(frags) + 1, 3), dtype=np.int64)
        if frags:
            sizes = np.array([(len(d.rows) // 4, len(d.acc_states), len(d.call_rows) // 3)
                              for d in frags], dtype=np.int64)
            np.cumsum(sizes, axis=0, out=ptr[1:])
            f_edges = np.concatenate([d.rows for d in frags])
            f_acc = np.concatenate([d.acc_states for d in frags])
            f_calls = np.concatenate([d.call_rows for d in frags])
        else:
            f_edges = f_acc = f_calls = _EMPTY
        status, *arrays = build_min_dfa(
            self.n,
            np.array(self.eps, dtype=_I32),
            np.concatenate([np.array(self.edges, dtype=_I32)] + self.blocks) if self.blocks
            else np.array(self.edges, dtype=_I32),
            np.array(self.calls, dtype=_I32),
            np.array(self.copies, dtype=_I32),
            ptr, f_edges, f_acc, f_calls,
            MAX_DFA_STATES,
        )
        if status == TOO_MANY_STATES:
            raise GrammarError(f"automaton too large: more than {MAX_DFA_STATES} DFA states")
        bounds, trans, accept, call_syms, calls, rows, acc_states, call_rows = arrays
        return RuleDfa(bounds, trans, accept.view(bool), call_syms, calls, rows, acc_states,
                       call_rows)


_EMPTY = np.zeros(0, dtype=_I32)


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
# hashes of the expressions with references built so far (see _Builder._shared_fragment)
_SEEN: set[int] = set()
_SEEN_MAX = 1 << 16
_FRAGMENTS_LOCK = threading.Lock()
_fragment_bytes = 0


def _cached_fragment(expr: Expr, local: dict) -> RuleDfa:
    """The minimal DFA of a reference-free expression, from the process-wide LRU (or from
    ``local``, which holds those too large for it)."""
    with _FRAGMENTS_LOCK:
        d = _FRAGMENTS.get(expr)
        if d is not None:
            _FRAGMENTS.move_to_end(expr)
            return d
    d = local.get(expr)
    if d is not None:
        return d
    d = _Builder(_Nfa(), GrammarDfas(None)).build_dfa(expr)
    if d.trans.nbytes + d.rows.nbytes > FRAGMENT_CACHE_BYTES // 16:
        local[expr] = d
    else:
        _keep_fragment(expr, d)
    return d


def _keep_fragment(key, d: RuleDfa) -> None:
    """Puts ``d`` in the process-wide LRU (unless it is too large for it)."""
    global _fragment_bytes
    size = d.trans.nbytes + d.rows.nbytes
    if size > FRAGMENT_CACHE_BYTES // 16:
        return
    with _FRAGMENTS_LOCK:
        if key not in _FRAGMENTS:
            _FRAGMENTS[key] = d
            _fragment_bytes += size
        while _fragment_bytes > FRAGMENT_CACHE_BYTES:
            _, old = _FRAGMENTS.popitem(last=False)
            _fragment_bytes -= old.trans.nbytes + old.rows.nbytes


def _renamed_calls(d: RuleDfa, old: np.ndarray, new: np.ndarray) -> RuleDfa:
    """``d`` with call symbol ``old[i]`` renamed ``new[i]`` (both increasing, so the call
    columns keep their order and the numbering of the states stays canonical)."""
    if not len(d.call_syms):
        return d
    # a few symbols: a lookup table (numpy's searchsorted and array_equal cost more here)
    lut = np.zeros(int(max(old[-1], d.call_syms[-1])) + 1, dtype=_I32)
    lut[old] = new
    syms = lut[d.call_syms]
    if syms.tobytes() == d.call_syms.tobytes():
        return d
    rows = d.call_rows.copy()
    rows[1::3] = lut[rows[1::3]]
    return RuleDfa(d.bounds, d.trans, d.accept, syms, d.calls, d.rows, d.acc_states, rows)


def sequence_ends(items: tuple) -> list[Expr]:
    """The last items of the sequences among the alternatives ``items`` that the builder
    builds from a junction of their own (all but literals): an alternative equal to one of
    them is entered at that junction instead of built again ("p R | R", an optional object
    property). The rule analysis counts such an alternative as no copy (rule_automata)."""
    return [i.items[-1] for i in items if type(i) is Seq and type(i.items[-1]) is not Literal]


def _separated_loop(items: tuple) -> int:
    """The first index i of ``items`` where ``items[i + 1]`` is ``(S items[i])*``, else -1."""
    for i in range(len(items) - 1):
        r = items[i + 1]
        if type(r) is Repeat and r.min == 0 and r.max is None and type(r.item) is Seq:
            inner = r.item.items
            if inner[-1] == items[i] and len(inner) > 1:
                return i
    return -1


def _is_leaf(e: Expr) -> bool:
    """Expressions cheaper to emit directly than to copy as a fragment."""
    if isinstance(e, (Literal, ByteSet, Empty, Nothing)):
        return True
    if isinstance(e, CharSet):
        return not e.ranges or e.ranges[-1][1] < 0x80
    return False


# --------------------------------------------------------------------------- the walk


class _Builder:
    """Emits an expression into one NFA."""

    def __init__(self, nfa: _Nfa, grammar: GrammarDfas):
        self.nfa = nfa
        self.grammar = grammar
        self.call_symbol = grammar.call_symbol
        self.memo = grammar.memo
        self.inlining: list[str] = []
        self.root: Expr | None = None  # the expression build_dfa was asked for
        # (id(expr), dst) -> (expr, junction): a Seq's last item built from a fresh junction
        self.tails: dict[tuple[int, int], tuple[Expr, int]] = {}

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
            loop = _separated_loop(items)
            if loop >= 0:
                self._separated(items, loop, src, dst)
                return
            last = items[-1]
            # a last item already built to ``dst`` from a junction of its own (the shared tail
            # of the alternatives of a key trie's complement): lead into that junction
            tail = self.tails.get((id(last), dst))
            shared = tail is not None and tail[0] is last
            n = len(items) - 1 if shared else len(items)  # items to build
            end = tail[1] if shared else dst
            first = nfa.new_states(n - 1)
            cur = src
            for i in range(n):
                nxt = end if i == n - 1 else first + i
                self.build(items[i], cur, nxt)
                cur = nxt
            if not shared and type(last) is not Literal:
                # its junction (fresh) leaves only through the last item's states, to ``dst``
                self.tails[(id(last), dst)] = (last, first + n - 2)
        elif t is Alt:
            if len(e.items) >= ALT_FRAGMENT and e is not self.root and self._ref_free(e):
                # a large reference-free alternation (escape spellings, enum values): one
                # cached fragment, copied by the kernel, rather than emitted item by item
                nfa.embed(self.fragment(e), src, dst)
                return
            later = []
            for item in e.items:
                if type(item) is Seq:
                    self.build(item, src, dst)
                else:
                    later.append(item)
            ends = sequence_ends(e.items) if later else ()
            for item in later:
                junction = self._tail_junction(ends, item, dst)
                if junction >= 0:
                    nfa.eps += (src, junction)
                else:
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
        elif t is Automaton or t is RowsAutomaton:
            self._automaton(e, src, dst)
        else:
            raise TypeError(f"not an IR expression: {e!r}")

    def _tail_junction(self, ends: list[Expr], x: Expr, dst: int) -> int:
        """The junction from which one of the sequence ends ``ends`` (see sequence_ends) equal
        to ``x`` was built to ``dst``, or -1."""
        for last in ends:
            if last == x:
                tail = self.tails.get((id(last), dst))
                if tail is not None and tail[0] is last:
                    return tail[1]
        return -1

    def _separated(self, items: tuple, i: int, src: int, dst: int) -> None:
        """``items`` with ``items[i]`` (A) followed by ``(S A)*``, as A once with S leading
        back to A's entry: the language of ``A (S A)*``, with one copy of A in the NFA (an
        array's items) instead of two (of which the minimization makes one again)."""
        nfa = self.nfa
        a_in = nfa.new_states(2)
        a_out = a_in + 1
        self._chain(items[:i], src, a_in)
        a = items[i]
        if type(a) is Ref:
            self._ref(a, a_in, a_out, once=True)
        else:
            self.build(a, a_in, a_out)
        self._chain(items[i + 1].item.items[:-1], a_out, a_in)
        self._chain(items[i + 2:], a_out, dst)

    def _chain(self, items: tuple, src: int, dst: int) -> None:
        """``items`` in sequence from ``src`` to ``dst`` (an epsilon edge when empty)."""
        if not items:
            self.nfa.eps += (src, dst)
            return
        first = self.nfa.new_states(len(items) - 1)
        cur = src
        for k, item in enumerate(items):
            nxt = dst if k == len(items) - 1 else first + k
            self.build(item, cur, nxt)
            cur = nxt

    def _charset(self, ranges, src: int, dst: int) -> None:
        nfa = self.nfa
        out = nfa.edges
        high = ranges
        if ranges and ranges[0][0] < 0x80:
            # one-byte characters: plain edges; the rest goes through the UTF-8 template
            k = 0
            while k < len(ranges) and ranges[k][0] < 0x80:
                lo, hi = ranges[k]
                out += (src, lo, min(hi, 0x7F), dst)
                k += 1
            high = ranges[k:]
            if ranges[k - 1][1] >= 0x80:
                high = ((0x80, ranges[k - 1][1]),) + high
            if not high:
                return
        n_inner, tpl = _utf8_template(high)
        # the inner states (continuation bytes) of a multi-byte set already leading to
        # ``dst`` are shared: only the lead-byte edges are new (the sets at the nodes of a key
        # trie differ in their ASCII part only)
        key = (high, dst)
        base = nfa.utf8_at.get(key)
        if base is not None:
            for i in range(0, len(tpl), 4):
                if tpl[i] == 0:
                    b = tpl[i + 3]
                    out += (src, tpl[i + 1], tpl[i + 2], dst if b == 1 else b + base)
            return
        base = nfa.new_states(n_inner) - 2
        nfa.utf8_at[key] = base
        for i in range(0, len(tpl), 4):
            a, lo, hi, b = tpl[i:i + 4]
            out += (src if a == 0 else a + base, lo, hi, dst if b == 1 else b + base)

    def _repeat(self, e: Repeat, src: int, dst: int) -> None:
        nfa = self.nfa
        item, lo, hi = e.item, e.min, e.max
        copies = lo + 1 if hi is None else hi
        frag = None if _is_leaf(item) or copies < 2 else self.fragment(item)
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
            for a, b in zip(starts, ends):
                nfa.embed(frag, a, b)
        else:
            for a, b in zip(starts, ends):
                self.build(item, a, b)

    @staticmethod
    def _ref_free(e: Expr) -> bool:
        return not refs_of(e)

    def build_dfa(self, e: Expr) -> RuleDfa:
        self.root = e
        self.build(e, 0, 1)
        return self.nfa.minimal_dfa()

    def fragment(self, e: Expr) -> RuleDfa:
        """The minimal DFA of ``e`` (memoized per grammar, and process-wide when ``e`` has
        no rule references)."""
        hit = self.grammar.by_id.get(id(e))
        if hit is not None:
            return hit[1]
        if self._ref_free(e):
            d = _cached_fragment(e, self.memo)
        else:
            d = self.memo.get(e)
            if d is None:
                d = self.memo[e] = self._shared_fragment(e)
        self.grammar.by_id[id(e)] = (e, d)  # holding e keeps its id unique
        return d

    def _shared_fragment(self, e: Expr) -> RuleDfa:
        """The DFA of ``e`` (which refers to rules) through the process-wide LRU, keyed by
        ``e`` and how the rules it reaches are resolved (see GrammarDfas.resolution); call
        symbols are stored as their ranks among the symbols reached.

        Only expressions met before (by hash) are looked up: finding what a rule reaches
        walks it, and most rules (an object's properties) occur in one grammar only."""
        h = hash(e)
        if h not in _SEEN:
            if len(_SEEN) >= _SEEN_MAX:
                _SEEN.clear()
            _SEEN.add(h)
            if not self.grammar.share_all:
                return self._built(e)
        res = self.grammar.resolution(e)
        if res is None:
            return self._built(e)
        key, syms = res
        with _FRAGMENTS_LOCK:
            local = _FRAGMENTS.get(key)
            if local is not None:
                _FRAGMENTS.move_to_end(key)
        if local is not None:
            return _renamed_calls(local, np.arange(len(syms), dtype=_I32), syms)
        d = self._built(e)
        _keep_fragment(key, _renamed_calls(d, syms, np.arange(len(syms), dtype=_I32)))
        return d

    def _built(self, e: Expr) -> RuleDfa:
        b = _Builder(_Nfa(), self.grammar)
        b.inlining = self.inlining
        return b.build_dfa(e)

    def _ref(self, e: Ref, src: int, dst: int, once: bool = False) -> None:
        if self.call_symbol is None:
            raise GrammarError(f"rule reference {e.name!r} in a regular expression")
        target = self.call_symbol(e.name)
        if isinstance(target, int):
            self.nfa.calls += (src, target, dst)
            return
        if type(target) is RunCall:
            self.nfa.eps += (src, dst)
            self.nfa.calls += (src, target.sym, dst)
            return
        if e.name in self.inlining:
            cycle = " -> ".join(self.inlining + [e.name])
            raise GrammarError(f"recursive rule cannot be inlined into an automaton: {cycle}")
        self.inlining.append(e.name)
        try:
            # a rule used once is emitted in place, unless it refers to no rule: then it is
            # a fragment, kept for other grammars; but an automaton is emitted in place (as
            # one block of edges), rather than determinized on its own first
            if _is_leaf(target) or ((once or e.name in self.grammar.single_use) and (
                    isinstance(target, Automaton) or not self._ref_free(target))):
                self.build(target, src, dst)
            else:
                self.nfa.embed(self.fragment(target), src, dst)
        finally:
            self.inlining.pop()

    def _automaton(self, a: Automaton, src: int, dst: int) -> None:
        nfa = self.nfa
        base = nfa.new_states(len(a.accepting))
        nfa.eps += (src, base + a.start)
        rows = a._rows
        if rows is None:  # (src, lo, hi, dst) rows and the accepting states, made once
            flat = [x for s, edges in enumerate(a.edges) for e in edges for x in (s, *e)]
            rows = (np.array(flat, dtype=_I32).reshape(-1, 4),
                    [s for s, acc in enumerate(a.accepting) if acc])
            object.__setattr__(a, "_rows", rows)
        edges, accepting = rows
        if len(edges):
            block = edges + np.array([base, 0, 0, base], dtype=_I32)
            nfa.blocks.append(block.ravel())
        for s in accepting:
            nfa.eps += (base + s, dst)
