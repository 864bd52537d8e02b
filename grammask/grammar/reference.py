"""A slow, deliberately simple recognizer over the grammar IR: the test oracle.

It shares no code with the automata layer: IR expressions become BNF productions whose
terminals (literals, byte sets, character sets, embedded automata) match variable-length
spans, and a textbook Earley parser runs over the input bytes. Use it to check front-ends
and the compiled matcher on small inputs; it is far too slow for anything else.
"""

from __future__ import annotations

import codecs
from typing import Callable

from .ir import (
    Alt,
    Automaton,
    ByteSet,
    CharSet,
    Empty,
    Expr,
    Grammar,
    Literal,
    Nothing,
    Ref,
    Repeat,
    Seq,
)

_MAX_UNROLL = 200_000


def matches(grammar: Grammar, data: bytes) -> bool:
    """Whether ``data`` is in the language of ``grammar``."""
    return _Parser(grammar).run(bytes(data), prefix=False)


def is_viable_prefix(grammar: Grammar, data: bytes) -> bool:
    """Whether some extension of ``data`` (``data`` itself included) is in the language."""
    return _Parser(grammar).run(bytes(data), prefix=True)


# --------------------------------------------------------------------------- terminals


def _decode_char(data: bytes, i: int) -> tuple[int, int] | None:
    """The code point starting at ``data[i]`` and its length, or None if not valid UTF-8."""
    for n in (1, 2, 3, 4):
        try:
            ch = data[i : i + n].decode("utf-8")
        except UnicodeDecodeError:
            continue
        if len(ch) == 1:
            return ord(ch), n
    return None


def _utf8_partial(data: bytes, ranges) -> bool:
    """Whether ``data`` is a proper prefix of the UTF-8 encoding of some char in ``ranges``."""
    interval = _prefix_interval(data)
    if interval is None:
        return False
    a, b = interval
    return any(lo <= b and a <= hi for lo, hi in ranges)


def _valid_partial(prefix: bytes) -> bool:
    try:
        codecs.getincrementaldecoder("utf-8")().decode(prefix, final=False)
    except UnicodeDecodeError:
        return False
    return True


def _prefix_interval(prefix: bytes) -> tuple[int, int] | None:
    """The code points whose UTF-8 encoding strictly extends ``prefix`` (an interval, since
    UTF-8 preserves order), or None when no character does."""
    if not prefix or not 0xC2 <= prefix[0] <= 0xF4:
        return None
    width = 2 if prefix[0] < 0xE0 else 3 if prefix[0] < 0xF0 else 4
    if len(prefix) >= width or not _valid_partial(prefix):
        return None
    ends = []
    for order in (range(0x80, 0xC0), range(0xBF, 0x7F, -1)):
        cur = prefix
        while True:
            try:
                ends.append(ord(cur.decode("utf-8")))
                break
            except UnicodeDecodeError:
                pass
            for b in order:
                if _valid_partial(cur + bytes([b])):
                    cur += bytes([b])
                    break
            else:
                return None
    return ends[0], ends[1]


class _Terminal:
    __slots__ = ("ends", "partial", "name")

    def __init__(self, ends: Callable, partial: Callable, name: str):
        self.ends = ends  # (data, i) -> iterable of end positions (> i)
        self.partial = partial  # (rest: bytes) -> is rest a proper prefix of a match?
        self.name = name


def _literal_terminal(data_lit: bytes) -> _Terminal:
    def ends(data, i):
        if data.startswith(data_lit, i):
            yield i + len(data_lit)

    return _Terminal(ends, lambda rest: len(rest) < len(data_lit) and data_lit.startswith(rest),
                     repr(data_lit))


def _byteset_terminal(ranges) -> _Terminal:
    def ends(data, i):
        if i < len(data) and any(lo <= data[i] <= hi for lo, hi in ranges):
            yield i + 1

    return _Terminal(ends, lambda rest: len(rest) == 0, "byteset")


def _charset_terminal(ranges) -> _Terminal:
    def ends(data, i):
        dec = _decode_char(data, i)
        if dec is not None and any(lo <= dec[0] <= hi for lo, hi in ranges):
            yield i + dec[1]

    return _Terminal(ends, lambda rest: len(rest) == 0 or _utf8_partial(rest, ranges), "charset")


def _automaton_terminal(a: Automaton) -> _Terminal:
    n = len(a.edges)
    # states from which an accepting state is reachable
    live = [bool(x) for x in a.accepting]
    changed = True
    while changed:
        changed = False
        for s in range(n):
            if not live[s] and any(live[d] for _, _, d in a.edges[s]):
                live[s] = changed = True

    def step(s, b):
        for lo, hi, d in a.edges[s]:
            if lo <= b <= hi:
                return d
        return -1

    def ends(data, i):
        s = a.start
        j = i
        while True:
            if a.accepting[s] and j > i:
                yield j
            if j >= len(data):
                return
            s = step(s, data[j])
            if s < 0 or not live[s]:
                return
            j += 1

    def partial(rest):
        s = a.start
        for b in rest:
            s = step(s, b)
            if s < 0:
                return False
        return live[s] and (len(rest) == 0 or any(True for _ in a.edges[s]))

    return _Terminal(ends, partial, a.label)


# --------------------------------------------------------------------------- BNF conversion


class _Parser:
    def __init__(self, grammar: Grammar):
        self.prods: list[tuple[int, tuple]] = []  # (lhs, symbols); symbol: int nt or _Terminal
        self.by_lhs: dict[int, list[int]] = {}
        self.n_nt = 0
        self.memo: dict = {}
        self.rule_nt: dict[str, int] = {}
        self.grammar = grammar
        self.empty_automaton_eps: set[int] = set()
        for name in grammar.rules:
            self.rule_nt[name] = self._new_nt()
        for name, body in grammar.rules.items():
            self._add(self.rule_nt[name], (self._sym(body),))
        self.start = self.rule_nt[grammar.start]
        self._prune()

    def _new_nt(self) -> int:
        self.n_nt += 1
        self.by_lhs[self.n_nt - 1] = []
        return self.n_nt - 1

    def _add(self, lhs: int, symbols: tuple) -> None:
        self.by_lhs[lhs].append(len(self.prods))
        self.prods.append((lhs, tuple(s for s in symbols if s is not None)))

    def _sym(self, e: Expr):
        """Returns a symbol (nt id or terminal) for ``e``; None stands for the empty string."""
        key = e if not isinstance(e, Automaton) else ("auto", id(e))
        if key in self.memo:
            return self.memo[key]
        sym = self._build(e)
        self.memo[key] = sym
        return sym

    def _build(self, e: Expr):
        if isinstance(e, Empty):
            return None
        if isinstance(e, Nothing):
            return self._new_nt()  # no productions: unproductive
        if isinstance(e, Literal):
            return _literal_terminal(e.data)
        if isinstance(e, ByteSet):
            return _byteset_terminal(e.ranges)
        if isinstance(e, CharSet):
            return _charset_terminal(e.ranges)
        if isinstance(e, Automaton):
            nt = self._new_nt()
            self._add(nt, (_automaton_terminal(e),))
            if e.accepting[e.start]:
                self._add(nt, ())
            return nt
        if isinstance(e, Ref):
            if e.name not in self.rule_nt:
                raise KeyError(f"undefined rule {e.name!r}")
            return self.rule_nt[e.name]
        if isinstance(e, Seq):
            nt = self._new_nt()
            self._add(nt, tuple(self._sym(i) for i in e.items))
            return nt
        if isinstance(e, Alt):
            nt = self._new_nt()
            for i in e.items:
                self._add(nt, (self._sym(i),))
            return nt
        if isinstance(e, Repeat):
            x = self._sym(e.item)
            if x is None:
                return None
            nt = self._new_nt()
            if e.max is None:
                star = self._new_nt()
                self._add(star, ())
                self._add(star, (x, star))
                self._add(nt, (x,) * e.min + (star,))
            else:
                if e.max > _MAX_UNROLL:
                    raise ValueError("repetition too large for the reference recognizer")
                tail = None
                for _ in range(e.max - e.min):
                    t = self._new_nt()
                    self._add(t, ())
                    self._add(t, (x, tail))
                    tail = t
                self._add(nt, (x,) * e.min + (tail,))
            return nt
        raise TypeError(f"not an IR expression: {e!r}")

    def _prune(self) -> None:
        productive = set()
        changed = True
        while changed:
            changed = False
            for lhs, syms in self.prods:
                if lhs not in productive and all(
                    not isinstance(s, int) or s in productive for s in syms
                ):
                    productive.add(lhs)
                    changed = True
        self.prods_ok = [
            all(not isinstance(s, int) or s in productive for s in syms) for _, syms in self.prods
        ]
        self.productive = productive
        nullable = set()
        changed = True
        while changed:
            changed = False
            for (lhs, syms), ok in zip(self.prods, self.prods_ok):
                if ok and lhs not in nullable and all(isinstance(s, int) and s in nullable
                                                      for s in syms):
                    nullable.add(lhs)
                    changed = True
        self.nullable = nullable

    # ----------------------------------------------------------------------- Earley

    def run(self, data: bytes, prefix: bool) -> bool:
        if self.start not in self.productive:
            return False
        n = len(data)
        sets: list[dict] = [dict() for _ in range(n + 1)]
        lists: list[list] = [[] for _ in range(n + 1)]

        def add(pos, item):
            if item not in sets[pos]:
                sets[pos][item] = True
                lists[pos].append(item)

        for p in self.by_lhs[self.start]:
            if self.prods_ok[p]:
                add(0, (p, 0, 0))
        partial_ok = False
        for i in range(n + 1):
            work = lists[i]
            k = 0
            while k < len(work):
                p, dot, origin = work[k]
                k += 1
                lhs, syms = self.prods[p]
                if dot == len(syms):
                    for q, qdot, qorigin in list(lists[origin]):
                        qsyms = self.prods[q][1]
                        if qdot < len(qsyms) and qsyms[qdot] == lhs:
                            add(i, (q, qdot + 1, qorigin))
                    continue
                sym = syms[dot]
                if isinstance(sym, int):
                    for q in self.by_lhs[sym]:
                        if self.prods_ok[q]:
                            add(i, (q, 0, i))
                    if sym in self.nullable:
                        add(i, (p, dot + 1, origin))
                else:
                    for j in sym.ends(data, i):
                        if j <= n:
                            add(j, (p, dot + 1, origin))
                    if prefix and not partial_ok and sym.partial(data[i:]):
                        partial_ok = True
        if prefix:
            return partial_ok or bool(lists[n])
        for p, dot, origin in lists[n]:
            if origin == 0 and self.prods[p][0] == self.start and dot == len(self.prods[p][1]):
                return True
        return False
