"""Exact automata for regexes with assertions, lookarounds, or leftmost-first semantics.

The regex (already a :mod:`regex_ast` tree) becomes a priority-ordered NFA over code points,
and a subset construction turns it into a code point DFA that :mod:`regex_utf8` lowers to bytes.
The construction simulates what ``re`` does, position by position:

* Threads are NFA states; the epsilon closure at a position runs depth-first in sre's
  backtracking order, so the thread list stays in priority order (Pike VM). For the "match"
  semantics (a Lark terminal: ``re.match`` must span the whole lexeme) a thread that reaches
  the end of the pattern cuts every lower-priority thread, as backtracking would never try
  them. For "fullmatch" and "search" priority is irrelevant and threads form a set.
* sre stops a ``*``/``{m,n}`` loop when an optional iteration matched the empty string; the
  closure tracks which loops started an iteration at the current position to do the same.
* The closure at a position is computed knowing the class of the next character, so ``\\b``,
  ``\\B``, ``\\Z`` and the MULTILINE anchors are decided exactly; the class of the previous
  character is part of the DFA state.
* A lookbehind ``(?<=Y)`` is decided by a "tracker": an automaton for "the text so far ends
  with a match of Y", run from the start of the string alongside the main one.
* A lookahead ``(?=Y)`` depends on text not yet read. Each thread carries a guard: a boolean
  function of "atoms", where an atom is the running state of a sub-automaton for Y started
  where the lookahead was passed. The atom's value is known once that automaton accepts,
  dies, or the string ends. Cuts made by guarded matches are themselves guarded (a thread
  below a match with guard G survives under "not G"). ``$`` is the lookahead ``(?=\\n?\\Z)``.

Everything is finite (guards are canonical truth tables over interned atoms), so the subset
construction terminates; its size is bounded and exceeding the bound raises GrammarError.
"""

from __future__ import annotations

from bisect import bisect_right

from ..errors import GrammarError
from . import regex_ast as A
from .ir import intersect_ranges, subtract_ranges
from .regex_charclass import ALL_CHARS, NEWLINE, word_ranges

MAX_NFA_NODES = 50_000
MAX_DFA_STATES = 20_000
#: Budget of NFA node visits (closures and steps) for one regex: a deterministic bound on the
#: construction time (a few seconds of CPU at most), past which it gives up with GrammarError.
MAX_CLOSURE_WORK = 400_000
MAX_GUARD_ATOMS = 8

# NFA node kinds
_CHAR, _SPLIT, _ITER, _BODYEND, _ACTX, _LOOKB, _LOOKA, _MATCH = range(8)

# Character classes of the next/previous character: 0 is the string's end/start.
_EDGE = 0


# --------------------------------------------------------------------------- guards
# A guard is (atoms, table): atoms a sorted tuple of (engine, substate) pairs, table an int
# whose bit ``i`` is the function's value when atom ``j`` has the value of bit ``j`` of ``i``.

TRUE = ((), 1)
FALSE = ((), 0)


def _atom_guard(atom, positive: bool):
    return ((atom,), 0b10 if positive else 0b01)


def _reduce(atoms: tuple, table: int):
    i = 0
    while i < len(atoms):
        n = len(atoms)
        bit = 1 << i
        lo = hi = 0
        k0 = k1 = 0
        for idx in range(1 << n):
            v = (table >> idx) & 1
            if idx & bit:
                hi |= v << k1
                k1 += 1
            else:
                lo |= v << k0
                k0 += 1
        if lo == hi:  # independent of atom i: drop it
            atoms = atoms[:i] + atoms[i + 1:]
            table = lo
        else:
            i += 1
    if not atoms:
        return TRUE if table & 1 else FALSE
    return (atoms, table)


def _lift(g, union: tuple) -> int:
    atoms, table = g
    if not atoms:
        return (1 << (1 << len(union))) - 1 if table else 0
    pos = [union.index(a) for a in atoms]
    out = 0
    for idx in range(1 << len(union)):
        sub = 0
        for j, p in enumerate(pos):
            if idx >> p & 1:
                sub |= 1 << j
        if table >> sub & 1:
            out |= 1 << idx
    return out


def _union_atoms(a, b) -> tuple:
    union = tuple(sorted(set(a[0]) | set(b[0])))
    if len(union) > MAX_GUARD_ATOMS:
        raise GrammarError("regex too complex: too many lookaheads pending at once")
    return union


def g_and(a, b):
    if a is FALSE or b is FALSE or a == FALSE or b == FALSE:
        return FALSE
    if a == TRUE:
        return b
    if b == TRUE or a == b:
        return a
    union = _union_atoms(a, b)
    return _reduce(union, _lift(a, union) & _lift(b, union))


def g_or(a, b):
    if a == TRUE or b == TRUE:
        return TRUE
    if a == FALSE:
        return b
    if b == FALSE or a == b:
        return a
    union = _union_atoms(a, b)
    return _reduce(union, _lift(a, union) | _lift(b, union))


def g_not(a):
    if a == TRUE:
        return FALSE
    if a == FALSE:
        return TRUE
    atoms, table = a
    return (atoms, ~table & ((1 << (1 << len(atoms))) - 1))


def _g_subst(g, mapping: dict):
    """Replace atoms: ``mapping[atom]`` is a new atom, TRUE or FALSE."""
    atoms, table = g
    if not atoms:
        return g
    new_atoms = tuple(sorted({m for m in mapping.values() if m is not TRUE and m is not FALSE}))
    if len(new_atoms) > MAX_GUARD_ATOMS:
        raise GrammarError("regex too complex: too many lookaheads pending at once")
    out = 0
    for idx in range(1 << len(new_atoms)):
        old = 0
        for j, a in enumerate(atoms):
            m = mapping[a]
            if m is TRUE or (m is not FALSE and idx >> new_atoms.index(m) & 1):
                old |= 1 << j
        if table >> old & 1:
            out |= 1 << idx
    return _reduce(new_atoms, out)


def _g_eval(g, value_of) -> bool:
    atoms, table = g
    idx = 0
    for j, a in enumerate(atoms):
        if value_of(a):
            idx |= 1 << j
    return bool(table >> idx & 1)


# --------------------------------------------------------------------------- NFA


class _RS:
    """An interned set of code point ranges with its bisect table (hashed by identity)."""

    __slots__ = ("los", "ranges")

    def __init__(self, ranges):
        self.ranges = ranges
        self.los = [lo for lo, _ in ranges]

    def __contains__(self, c: int) -> bool:
        i = bisect_right(self.los, c) - 1
        return i >= 0 and c <= self.ranges[i][1]


class _Engine:
    __slots__ = ("accumulate", "match", "ordered", "spawn", "start")

    def __init__(self, start, match, spawn, accumulate, ordered):
        self.start = start
        self.match = match
        self.spawn = spawn
        self.accumulate = accumulate
        self.ordered = ordered


class _Nfa:
    def __init__(self, describe):
        self.kind: list[int] = []
        self.a: list = []
        self.b: list = []
        self.c: list = []
        self.engines: list[_Engine] = []
        self.trackers: list[int] = []  # engine indices, in world order
        self.anchor_kinds: set = set()
        self._loop_ids = 0
        self._eol_engine: int | None = None
        self._sets: dict = {}
        self._shared: dict = {}
        self.describe = describe

    def rset(self, ranges) -> _RS:
        rs = self._sets.get(ranges)
        if rs is None:
            rs = self._sets[ranges] = _RS(ranges)
        return rs

    def add(self, kind, a=None, b=None, c=None) -> int:
        if len(self.kind) >= MAX_NFA_NODES:
            raise GrammarError(self.describe(
                f"regex too large to compile exactly (over {MAX_NFA_NODES} automaton nodes after "
                "unrolling counted repetitions)"))
        self.kind.append(kind)
        self.a.append(a)
        self.b.append(b)
        self.c.append(c)
        return len(self.kind) - 1

    def new_engine(self, body: A.Node, *, spawn, accumulate, ordered, in_lookbehind) -> int:
        match = self.add(_MATCH)
        idx = len(self.engines)
        self.engines.append(None)  # reserve the index (bodies may create engines)
        start = self.compile(body, match, in_lookbehind)
        self.engines[idx] = _Engine(start, match, spawn, accumulate, ordered)
        return idx

    def compile(self, node: A.Node, nxt: int, lb: bool) -> int:
        if isinstance(node, A.Chars):
            return self.add(_CHAR, self.rset(node.ranges), nxt) if node.ranges else self.add(_SPLIT, ())
        if isinstance(node, A.Cat):
            for item in reversed(node.items):
                nxt = self.compile(item, nxt, lb)
            return nxt
        if isinstance(node, A.Alt):
            return self.add(_SPLIT, tuple(self.compile(i, nxt, lb) for i in node.items))
        if isinstance(node, A.Group):
            return self.compile(node.item, nxt, lb)
        if isinstance(node, A.Repeat):
            return self._repeat(node, nxt, lb)
        if isinstance(node, A.Anchor):
            if node.kind == A.EOS_NL:
                if lb:
                    raise GrammarError(self.describe("'$' inside a lookbehind"))
                return self.add(_LOOKA, self._eos_nl_engine(), nxt, False)
            self.anchor_kinds.add((node.kind, node.ascii_word))
            return self.add(_ACTX, (node.kind, node.ascii_word), nxt)
        if isinstance(node, A.Look):
            # One sub-automaton per distinct body, however often the body occurs (repetitions
            # are unrolled): equal conditions then share atoms and tracker states.
            if node.behind:
                t = self._shared.get(("behind", node.item))
                if t is None:
                    e = self.new_engine(node.item, spawn=True, accumulate=False, ordered=False,
                                        in_lookbehind=True)
                    self.trackers.append(e)
                    t = self._shared[("behind", node.item)] = len(self.trackers) - 1
                return self.add(_LOOKB, t, nxt, node.negate)
            if lb:
                raise GrammarError(self.describe("a lookahead inside a lookbehind"))
            e = self._shared.get(("ahead", node.item))
            if e is None:
                e = self._shared[("ahead", node.item)] = self.new_engine(
                    node.item, spawn=False, accumulate=True, ordered=False, in_lookbehind=False)
            return self.add(_LOOKA, e, nxt, node.negate)
        raise GrammarError(self.describe(f"unsupported construct {type(node).__name__}"))

    def _eos_nl_engine(self) -> int:
        if self._eol_engine is None:
            body = A.Cat((A.Repeat(A.Chars(NEWLINE), 0, 1), A.Anchor(A.EOS)))
            self._eol_engine = self.new_engine(body, spawn=False, accumulate=True,
                                               ordered=False, in_lookbehind=False)
        return self._eol_engine

    def _repeat(self, node: A.Repeat, nxt: int, lb: bool) -> int:
        item, lo, hi, greedy = node.item, node.min, node.max, not node.lazy
        nullable = A.width(item)[0] == 0

        def iteration(cont: int) -> int:
            # One optional iteration followed by ``cont``; sre leaves the loop for the tail
            # (``nxt``) when such an iteration matched the empty string.
            if not nullable:
                return self.compile(item, cont, lb)
            self._loop_ids += 1
            lid = self._loop_ids
            end = self.add(_BODYEND, lid, cont, nxt)
            return self.add(_ITER, lid, self.compile(item, end, lb))

        def decision(body: int) -> tuple:
            return (body, nxt) if greedy else (nxt, body)

        if hi is None:
            d = self.add(_SPLIT, ())
            self.a[d] = decision(iteration(d))
            entry = d
        else:
            entry = nxt
            for _ in range(hi - lo):
                entry = self.add(_SPLIT, decision(iteration(entry)))
        for _ in range(lo):
            entry = self.compile(item, entry, lb)
        return entry


# --------------------------------------------------------------------------- classes


class _Classes:
    """Partitions of the alphabet into the classes the anchors need, for the previous character
    (index 0 = start of string) and the next one (index 0 = end of string)."""

    def __init__(self, kinds: set, b_quirk: bool):
        need_prev = {k for k, _ in kinds} & {A.BOS, A.BOL, A.WORDB, A.NWORDB}
        need_nl_prev = A.BOL in need_prev
        need_nl_next = any(k == A.EOL for k, _ in kinds)
        word_flavours = {asc for k, asc in kinds if k in (A.WORDB, A.NWORDB)}
        self.track_prev = bool(need_prev)
        self.b_quirk = b_quirk
        self.prev = [_RS(r) for r in
                     self._partition(need_nl_prev, word_flavours if self.track_prev else set())]
        self.next = [_RS(r) for r in self._partition(need_nl_next, word_flavours)]
        self.props_prev = [self._props(r.ranges) for r in self.prev]
        self.props_next = [self._props(r.ranges) for r in self.next]

    @staticmethod
    def _partition(nl: bool, flavours: set) -> list:
        parts = [ALL_CHARS]
        splitters = []
        if nl:
            splitters.append(NEWLINE)
        for asc in sorted(flavours, reverse=True):
            splitters.append(word_ranges(asc))
        for s in splitters:
            new = []
            for p in parts:
                a = intersect_ranges(p, s)
                b = subtract_ranges(p, s)
                new.extend(x for x in (a, b) if x)
            parts = new
        return parts

    @staticmethod
    def _props(r) -> tuple:
        c = r[0][0]
        return (c == 10, c in _RS(word_ranges(True)), c in _RS(word_ranges(False)))

    def prev_index(self, c: int) -> int:
        if not self.track_prev:
            return 1
        for i, r in enumerate(self.prev):
            if c in r:
                return i + 1
        raise AssertionError(c)

    def test(self, kind: str, ascii_word: bool, prev: int, nxt: int) -> bool:
        if kind == A.BOS:
            return prev == _EDGE
        if kind == A.EOS:
            return nxt == _EDGE
        if kind == A.BOL:
            return prev == _EDGE or self.props_prev[prev - 1][0]
        if kind == A.EOL:
            return nxt == _EDGE or self.props_next[nxt - 1][0]
        w = 1 if ascii_word else 2
        wp = prev != _EDGE and self.props_prev[prev - 1][w]
        wn = nxt != _EDGE and self.props_next[nxt - 1][w]
        if kind == A.WORDB:
            return wp != wn
        if kind == A.NWORDB:
            if self.b_quirk and prev == _EDGE and nxt == _EDGE:
                return False
            return wp == wn
        raise AssertionError(kind)


_REFINE_CACHE: dict = {}


def _refine(domain, preds) -> list:
    """Split ``domain`` into maximal sets of characters that lie in the same predicates.

    Returns ``[(ranges, representative)]``. Memoized: many states test the same sets.
    """
    key = (domain, frozenset(preds))
    hit = _REFINE_CACHE.get(key)
    if hit is None:
        if len(_REFINE_CACHE) > 4096:
            _REFINE_CACHE.clear()
        hit = _REFINE_CACHE[key] = _refine_uncached(domain, preds)
    return hit


def _refine_uncached(domain, preds) -> list:
    domain = domain.ranges
    preds = [p.ranges for p in preds]
    points = {lo for lo, _ in domain} | {hi + 1 for _, hi in domain}
    for p in preds:
        for lo, hi in p:
            points.add(lo)
            points.add(hi + 1)
    pts = sorted(points)
    where = {p: i for i, p in enumerate(pts)}
    diff = [0] * (len(pts) + 1)
    for j, p in enumerate([domain] + list(preds)):
        bit = 1 << j
        for lo, hi in p:
            diff[where[lo]] ^= bit
            diff[where[hi + 1]] ^= bit
    groups: dict = {}
    sig = 0
    for i in range(len(pts) - 1):
        sig ^= diff[i]
        if sig & 1:
            groups.setdefault(sig, []).append((pts[i], pts[i + 1] - 1))
    out = []
    for cells in groups.values():
        merged = []
        for lo, hi in cells:
            if merged and merged[-1][1] + 1 == lo:
                merged[-1] = (merged[-1][0], hi)
            else:
                merged.append((lo, hi))
        out.append((tuple(merged), merged[0][0]))
    return out


# --------------------------------------------------------------------------- the construction


class CodepointDfa:
    """A DFA over code points: ``edges[s]`` is a list of ``(ranges, target)``."""

    __slots__ = ("accepting", "edges", "start")

    def __init__(self, start, edges, accepting):
        self.start = start
        self.edges = edges
        self.accepting = accepting


class _Builder:
    def __init__(self, nfa: _Nfa, main: int, classes: _Classes, skip_empty: bool):
        self.nfa = nfa
        self.main = main
        self.cls = classes
        self.skip_empty = skip_empty
        self.worlds: dict = {}
        self.world_list: list = []
        self.subs: list[dict] = [{} for _ in nfa.engines]
        self.sub_list: list[list] = [[] for _ in nfa.engines]
        self._closures: dict = {}
        self._accept_end: dict = {}
        self._preds: dict = {}
        self.work = 0
        self.ACCEPT = ("accept",)
        self.DEAD = ("dead",)

    # ---- interning

    def world_id(self, world) -> int:
        i = self.worlds.get(world)
        if i is None:
            i = self.worlds[world] = len(self.world_list)
            self.world_list.append(world)
        return i

    def sub_id(self, e: int, sub) -> int:
        table = self.subs[e]
        i = table.get(sub)
        if i is None:
            i = table[sub] = len(self.sub_list[e])
            self.sub_list[e].append(sub)
        return i

    def atom_value(self, e: int, sub):
        """The guard of a sub-automaton state used as an atom: TRUE/FALSE when decided."""
        threads, matched = sub
        if matched == TRUE:
            return TRUE
        if not threads and matched == FALSE:
            return FALSE
        return (e, self.sub_id(e, sub))

    # ---- closure

    def closure(self, e: int, threads: tuple, wid: int, ncls: int):
        key = (e, threads, wid, ncls)
        hit = self._closures.get(key)
        if hit is not None:
            return hit
        eng = self.nfa.engines[e]
        kind, na, nb, nc = self.nfa.kind, self.nfa.a, self.nfa.b, self.nfa.c
        work = 0
        world = self.world_list[wid]
        prev = world[0]
        ordered = eng.ordered
        out: list = []
        out_pos: dict = {}
        seen: dict = {}
        match = FALSE
        cut = FALSE
        seeds = list(threads)
        if eng.spawn:
            seeds.append((eng.start, TRUE))
        for seed_node, seed_guard in seeds:
            if cut == TRUE:
                break
            stack = [(seed_node, seed_guard, frozenset())]
            while stack:
                n, g, started = stack.pop()
                work += 1
                if ordered and cut != FALSE:
                    if cut == TRUE:
                        break
                    g = g_and(g, g_not(cut))
                    if g == FALSE:
                        continue
                skey = (n, started)
                before = seen.get(skey)
                if before is not None:
                    if before == TRUE:
                        continue
                    rest = g_and(g, g_not(before))
                    if rest == FALSE:
                        continue
                    seen[skey] = g_or(before, g)
                    g = rest
                else:
                    seen[skey] = g
                k = kind[n]
                if k == _CHAR:
                    if ordered:
                        out.append((n, g))
                    else:
                        p = out_pos.get(n)
                        if p is None:
                            out_pos[n] = len(out)
                            out.append((n, g))
                        else:
                            out[p] = (n, g_or(out[p][1], g))
                elif k == _SPLIT:
                    for t in reversed(na[n]):
                        stack.append((t, g, started))
                elif k == _MATCH:
                    if n == eng.match:
                        match = g_or(match, g)
                        if ordered:
                            cut = g_or(cut, g)
                elif k == _ITER:
                    stack.append((nb[n], g, started | {na[n]}))
                elif k == _BODYEND:
                    if na[n] in started:
                        stack.append((nc[n], g, started - {na[n]}))
                    else:
                        stack.append((nb[n], g, started))
                elif k == _ACTX:
                    akind, asc = na[n]
                    if self.cls.test(akind, asc, prev, ncls):
                        stack.append((nb[n], g, started))
                elif k == _LOOKB:
                    t = nb[n]
                    ok = self.tracker_matches(na[n], wid, ncls)
                    if ok != bool(nc[n]):
                        stack.append((t, g, started))
                elif k == _LOOKA:
                    sub_e = na[n]
                    init = (((self.nfa.engines[sub_e].start, TRUE),), FALSE)
                    atom = self.atom_value(sub_e, init)
                    if atom == TRUE or atom == FALSE:
                        ok = (atom == TRUE) != bool(nc[n])
                        if ok:
                            stack.append((nb[n], g, started))
                        continue
                    g2 = g_and(g, _atom_guard(atom, not nc[n]))
                    if g2 != FALSE:
                        stack.append((nb[n], g2, started))
        self.work += work
        if self.work > MAX_CLOSURE_WORK:
            raise GrammarError(self.nfa.describe(
                "regex too complex to compile exactly (the automaton construction exceeded its "
                "work budget; large counted repetitions under lookarounds, word boundaries or "
                "'match' semantics are the usual cause)"))
        result = (tuple(out), match)
        self._closures[key] = result
        return result

    def tracker_matches(self, t: int, wid: int, ncls: int) -> bool:
        e = self.nfa.trackers[t]
        tstate = self.world_list[wid][1][t]
        _, match = self.closure(e, tstate, wid, ncls)
        return match == TRUE

    # ---- stepping

    def _advance_guard(self, g, wid: int, ncls: int, c: int):
        atoms = g[0]
        if not atoms:
            return g
        mapping = {}
        for atom in atoms:
            e, sid = atom
            new = self.step_sub(e, self.sub_list[e][sid], wid, ncls, c)
            mapping[atom] = self.atom_value(e, new)
        return _g_subst(g, mapping)

    def _step_threads(self, e: int, out: tuple, wid: int, ncls: int, c: int) -> tuple:
        na, nb = self.nfa.a, self.nfa.b
        self.work += len(out)
        ordered = self.nfa.engines[e].ordered
        res: list = []
        if ordered:
            seen: dict = {}
            for n, g in out:
                if c not in na[n]:
                    continue
                t = nb[n]
                g = self._advance_guard(g, wid, ncls, c)
                before = seen.get(t)
                if before is not None:
                    rest = g_and(g, g_not(before))
                    seen[t] = g_or(before, g)
                    g = rest
                else:
                    seen[t] = g
                if g != FALSE:
                    res.append((t, g))
            return tuple(res)
        merged: dict = {}
        for n, g in out:
            if c not in na[n]:
                continue
            t = nb[n]
            g = self._advance_guard(g, wid, ncls, c)
            if g == FALSE:
                continue
            merged[t] = g_or(merged[t], g) if t in merged else g
        return tuple(sorted((t, g) for t, g in merged.items() if g != FALSE))

    def step_sub(self, e: int, sub, wid: int, ncls: int, c: int):
        threads, matched = sub
        out, match = self.closure(e, threads, wid, ncls)
        new_threads = self._step_threads(e, out, wid, ncls, c)
        eng = self.nfa.engines[e]
        if eng.accumulate:
            m = g_or(matched, match)
            new_matched = self._advance_guard(m, wid, ncls, c) if m != FALSE else FALSE
            if new_matched == TRUE:
                return ((), TRUE)
        else:
            new_matched = FALSE
        return (new_threads, new_matched)

    def step_world(self, wid: int, ncls: int, c: int) -> int:
        tstates = self.world_list[wid][1]
        new_ts = []
        for t, ts in enumerate(tstates):
            e = self.nfa.trackers[t]
            out, _ = self.closure(e, ts, wid, ncls)
            new_ts.append(self._step_threads(e, out, wid, ncls, c))
        return self.world_id((self.cls.prev_index(c), tuple(new_ts)))

    # ---- acceptance at the end of the string

    def sub_accepts_at_end(self, e: int, sub, wid: int) -> bool:
        key = (e, sub, wid)
        hit = self._accept_end.get(key)
        if hit is not None:
            return hit
        threads, matched = sub
        _, match = self.closure(e, threads, wid, _EDGE)
        g = g_or(matched, match)
        res = _g_eval(g, lambda atom: self.sub_accepts_at_end(
            atom[0], self.sub_list[atom[0]][atom[1]], wid))
        self._accept_end[key] = res
        return res

    # ---- predicates (which character sets the next step depends on)

    def _collect(self, e: int, sub, wid: int, ncls: int, acc: set, seen: set) -> None:
        threads, matched = sub
        out, match = self.closure(e, threads, wid, ncls)
        na = self.nfa.a
        for n, g in out:
            acc.add(na[n])
            self._collect_guard(g, wid, ncls, acc, seen)
        self._collect_guard(match, wid, ncls, acc, seen)
        self._collect_guard(matched, wid, ncls, acc, seen)

    def _collect_guard(self, g, wid, ncls, acc, seen) -> None:
        for atom in g[0]:
            if atom in seen:
                continue
            seen.add(atom)
            e, sid = atom
            self._collect(e, self.sub_list[e][sid], wid, ncls, acc, seen)

    def predicates(self, state, ncls: int) -> list:
        wid, threads, matched, _ = state
        acc: set = set()
        seen: set = set()
        self._collect(self.main, (threads, matched), wid, ncls, acc, seen)
        for t, ts in enumerate(self.world_list[wid][1]):
            self._collect(self.nfa.trackers[t], (ts, FALSE), wid, ncls, acc, seen)
        if self.cls.track_prev:
            acc.update(self.cls.prev)
        return list(acc)

    # ---- the subset construction

    def build(self) -> CodepointDfa:
        nfa = self.nfa
        main = nfa.engines[self.main]
        w0 = self.world_id((_EDGE, tuple(() for _ in nfa.trackers)))
        threads0 = () if main.spawn else ((main.start, TRUE),)
        s0 = (w0, threads0, FALSE, False)
        index = {s0: 0}
        states = [s0]
        edges: list = []
        accepting: list = []
        i = 0
        while i < len(states):
            state = states[i]
            i += 1
            if state is self.ACCEPT:
                edges.append([(ALL_CHARS, index[state])])
                accepting.append(True)
                continue
            wid, threads, matched, nonempty = state
            acc = self.sub_accepts_at_end(self.main, (threads, matched), wid)
            accepting.append(acc and (nonempty or not self.skip_empty))
            out_edges = []
            for ncls, domain in enumerate(self.cls.next, start=1):
                preds = self.predicates(state, ncls)
                for cell, c in _refine(domain, preds):
                    nxt = self.step(state, ncls, c)
                    if nxt is None:
                        continue
                    j = index.get(nxt)
                    if j is None:
                        if len(states) >= MAX_DFA_STATES:
                            raise GrammarError(nfa.describe(
                                f"regex too complex to compile exactly (over {MAX_DFA_STATES} "
                                "automaton states)"))
                        j = index[nxt] = len(states)
                        states.append(nxt)
                    out_edges.append((cell, j))
            edges.append(_merge_edges(out_edges))
        return CodepointDfa(0, edges, accepting)

    def step(self, state, ncls: int, c: int):
        wid, threads, matched, _ = state
        sub = self.step_sub(self.main, (threads, matched), wid, ncls, c)
        new_threads, new_matched = sub
        if new_matched == TRUE:
            return self.ACCEPT
        main = self.nfa.engines[self.main]
        if not new_threads and new_matched == FALSE and not main.spawn:
            return None
        return (self.step_world(wid, ncls, c), new_threads, new_matched, self.skip_empty)


_MOORE_ROUNDS = 8


def minimize_codepoint_dfa(dfa: CodepointDfa) -> CodepointDfa:
    """Trim to live states and merge equivalent ones.

    Moore refinement first (quick on the shallow automata that large classes such as ``\\w``
    make); when it needs more than a few rounds (long chains from counted repetitions),
    Hopcroft's algorithm over the code point classes the edges induce.
    """
    n = len(dfa.edges)
    rev: list = [[] for _ in range(n)]
    for s_, row in enumerate(dfa.edges):
        for _, t in row:
            rev[t].append(s_)
    live = [False] * n
    stack = [s_ for s_ in range(n) if dfa.accepting[s_]]
    for s_ in stack:
        live[s_] = True
    while stack:
        t = stack.pop()
        for p in rev[t]:
            if not live[p]:
                live[p] = True
                stack.append(p)
    if not live[dfa.start]:
        return CodepointDfa(0, [[]], [False])
    states = [s_ for s_ in range(n) if live[s_]]
    rows = {s_: [(r, t) for r, t in dfa.edges[s_] if live[t]] for s_ in states}
    block = _moore_blocks(states, rows, dfa.accepting)
    if block is None:
        block = _hopcroft_blocks(states, rows, dfa.accepting)
    order = {block[dfa.start]: 0}
    queue = [dfa.start]
    rep = {}
    for s_ in states:
        rep.setdefault(block[s_], s_)
    edges: list = []
    accepting: list = []
    for s_ in queue:
        row = []
        for r, t in rows[s_]:
            b = block[t]
            if b not in order:
                order[b] = len(order)
                queue.append(rep[b])
            row.append((r, order[b]))
        edges.append(_merge_edges(row))
        accepting.append(dfa.accepting[s_])
    return CodepointDfa(0, edges, accepting)


def _moore_blocks(states, rows, accepting):
    block = {s_: int(accepting[s_]) for s_ in states}
    count = len(set(block.values()))
    merged_ids: dict = {}  # ids of the edge range tuples sent to one block -> id of their union
    union_ids: dict = {}
    for _ in range(_MOORE_ROUNDS):
        sigs: dict = {}
        new_block = {}
        for s_ in states:
            by_block: dict = {}
            for r, t in rows[s_]:
                by_block.setdefault(block[t], []).append(r)
            parts = []
            for b, rs in by_block.items():
                key = tuple(sorted(map(id, rs)))
                u = merged_ids.get(key)
                if u is None:
                    union = _merged([x for r in rs for x in r]) if len(rs) > 1 else rs[0]
                    u = merged_ids[key] = union_ids.setdefault(union, len(union_ids))
                parts.append((b, u))
            key = (block[s_], tuple(sorted(parts)))
            new_block[s_] = sigs.setdefault(key, len(sigs))
        block = new_block
        if len(sigs) == count:
            return block
        count = len(sigs)
    return None


def _merged(ranges: list) -> tuple:
    ranges.sort()
    out = [ranges[0]]
    for lo, hi in ranges[1:]:
        if out[-1][1] + 1 >= lo:
            out[-1] = (out[-1][0], max(hi, out[-1][1]))
        else:
            out.append((lo, hi))
    return tuple(out)


def _hopcroft_blocks(states, rows, accepting):
    points = set()
    shapes: dict = {}
    for s_ in states:
        row = rows[s_]
        shape = tuple(sorted(r for r, _ in row))
        shapes.setdefault(shape, None)
        for r, _ in row:
            for lo, hi in r:
                points.add(lo)
                points.add(hi + 1)
    pts = sorted(points)
    k = len(pts) - 1
    where = {p: i for i, p in enumerate(pts)}
    # Symbols: intervals that every row shape covers with the same edge are indistinguishable
    # (same target in every state), e.g. all non-ASCII digits. Few symbols keep this fast.
    sig = [0] * k
    for shape in shapes:
        mark = [0] * k
        for e, r in enumerate(shape, start=1):
            for lo, hi in r:
                for a in range(where[lo], where[hi + 1]):
                    mark[a] = e
        sig = [hash((x, y)) for x, y in zip(sig, mark)]
    symbol_of: dict = {}
    reps = []
    for a in range(k):
        if sig[a] not in symbol_of:
            symbol_of[sig[a]] = len(reps)
            reps.append(pts[a])
    k = len(reps)
    index = {s_: i for i, s_ in enumerate(states)}
    n = len(states)
    sink = n
    inv: list = [{sink: [sink]} for _ in range(k)]  # symbol -> target -> sources
    for s_ in states:
        i = index[s_]
        row = [(_RS(r), index[t]) for r, t in rows[s_]]
        for a, c in enumerate(reps):
            for rs, t in row:
                if c in rs:
                    break
            else:
                t = sink
            inv[a].setdefault(t, []).append(i)
    acc = [i for i, s_ in enumerate(states) if accepting[s_]]
    rej = [i for i, s_ in enumerate(states) if not accepting[s_]] + [sink]
    blocks = [set(b) for b in (acc, rej) if b]
    block_of = [0] * (n + 1)
    for b, members in enumerate(blocks):
        for i in members:
            block_of[i] = b
    smaller = min(range(len(blocks)), key=lambda b: len(blocks[b]))
    work = [(smaller, a) for a in range(k)]
    pending = set(work)
    while work:
        item = work.pop()
        pending.discard(item)
        b, a = item
        inv_a = inv[a]
        touched: dict = {}
        for t in blocks[b]:
            for src in inv_a.get(t, ()):
                touched.setdefault(block_of[src], set()).add(src)
        for y, inter in touched.items():
            if len(inter) == len(blocks[y]):
                continue
            z = len(blocks)
            blocks[y] -= inter
            blocks.append(inter)
            for i in inter:
                block_of[i] = z
            for c in range(k):
                if (y, c) in pending:
                    pending.add((z, c))
                    work.append((z, c))
                else:
                    pick = z if len(inter) <= len(blocks[y]) else y
                    pending.add((pick, c))
                    work.append((pick, c))
    return {s_: block_of[index[s_]] for s_ in states}


def _merge_edges(edges: list) -> list:
    by_target: dict = {}
    for cell, j in edges:
        by_target.setdefault(j, []).append(cell)
    out = []
    for j, cells in by_target.items():
        if len(cells) == 1:
            out.append((tuple(cells[0]), j))
            continue
        flat = sorted(r for cell in cells for r in cell)
        merged = [flat[0]]
        for lo, hi in flat[1:]:
            if merged[-1][1] + 1 >= lo:
                merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
            else:
                merged.append((lo, hi))
        out.append((tuple(merged), j))
    return out


# --------------------------------------------------------------------------- entry point


def _b_quirk() -> bool:
    import re

    return re.fullmatch(r"\B", "") is None


def build_dfa(root: A.Node, semantics: str, describe) -> CodepointDfa:
    """The code point DFA of ``root`` under "fullmatch", "match" or "search" semantics."""
    nfa = _Nfa(describe)
    if semantics == "fullmatch":
        main = nfa.new_engine(root, spawn=False, accumulate=False, ordered=False,
                              in_lookbehind=False)
    elif semantics == "match":
        main = nfa.new_engine(root, spawn=False, accumulate=False, ordered=True,
                              in_lookbehind=False)
    elif semantics == "search":
        main = nfa.new_engine(root, spawn=True, accumulate=True, ordered=False,
                              in_lookbehind=False)
    else:  # pragma: no cover - checked by the caller
        raise ValueError(semantics)
    classes = _Classes(nfa.anchor_kinds, _b_quirk())
    builder = _Builder(nfa, main, classes, skip_empty=(semantics == "match"))
    return builder.build()


__all__ = ["CodepointDfa", "build_dfa", "minimize_codepoint_dfa"]
