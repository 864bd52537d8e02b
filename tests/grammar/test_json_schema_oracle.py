"""A small direct interpreter of the grammar IR, used by the JSON Schema tests.

It computes, for an expression and a start offset, the set of offsets where a match can end.
That is exact for grammars without left recursion (the JSON Schema front-end never makes one:
every recursive reference sits behind a ``[`` or ``{``). When the project's reference
recognizer (:mod:`grammask.grammar.reference`) is present, :func:`matches` cross-checks it.
"""

from __future__ import annotations

import sys

from grammask.grammar import ir

try:  # the Earley oracle, when it has landed
    from grammask.grammar import reference as _reference
except ImportError:  # pragma: no cover - depends on the state of the tree
    _reference = None


def _decode_char(data: bytes, pos: int) -> tuple[int, int] | None:
    b = data[pos]
    if b < 0x80:
        return b, pos + 1
    for n, lead_max in ((2, 0xDF), (3, 0xEF), (4, 0xF4)):
        if b <= lead_max:
            chunk = data[pos : pos + n]
            if len(chunk) < n:
                return None
            try:
                text = chunk.decode("utf-8")
            except UnicodeDecodeError:
                return None
            return ord(text), pos + n
    return None


def _in_ranges(c: int, ranges) -> bool:
    return any(lo <= c <= hi for lo, hi in ranges)


class _Matcher:
    def __init__(self, grammar: ir.Grammar, data: bytes):
        self.rules = grammar.rules
        self.data = data
        self.memo: dict[tuple[int, int], frozenset[int]] = {}
        self.active: set[tuple[int, int]] = set()

    def ends(self, expr: ir.Expr, pos: int) -> frozenset[int]:
        key = (id(expr), pos)
        hit = self.memo.get(key)
        if hit is not None:
            return hit
        if key in self.active:  # left recursion: not produced by the JSON front-end
            return frozenset()
        self.active.add(key)
        out = frozenset(self._ends(expr, pos))
        self.active.discard(key)
        self.memo[key] = out
        return out

    def _ends(self, e: ir.Expr, pos: int):
        data = self.data
        if isinstance(e, ir.Empty):
            return {pos}
        if isinstance(e, ir.Nothing):
            return set()
        if isinstance(e, ir.Literal):
            return {pos + len(e.data)} if data.startswith(e.data, pos) else set()
        if isinstance(e, ir.ByteSet):
            return {pos + 1} if pos < len(data) and _in_ranges(data[pos], e.ranges) else set()
        if isinstance(e, ir.CharSet):
            if pos >= len(data):
                return set()
            got = _decode_char(data, pos)
            return {got[1]} if got and _in_ranges(got[0], e.ranges) else set()
        if isinstance(e, ir.Seq):
            cur = {pos}
            for item in e.items:
                cur = {q for p in cur for q in self.ends(item, p)}
                if not cur:
                    break
            return cur
        if isinstance(e, ir.Alt):
            return {q for item in e.items for q in self.ends(item, pos)}
        if isinstance(e, ir.Repeat):
            out = set()
            frontier = {pos}
            seen: set[int] = set()
            count = 0
            while frontier:
                if count >= e.min:
                    out |= frontier
                if e.max is not None and count >= e.max:
                    break
                if count >= e.min:
                    frontier = frontier - seen
                    seen |= frontier
                frontier = {q for p in frontier for q in self.ends(e.item, p)}
                count += 1
            return out
        if isinstance(e, ir.Ref):
            return self.ends(self.rules[e.name], pos)
        if isinstance(e, ir.Automaton):
            out = set()
            state = e.start
            p = pos
            while True:
                if e.accepting[state]:
                    out.add(p)
                if p >= len(data):
                    break
                b = data[p]
                for lo, hi, dst in e.edges[state]:
                    if lo <= b <= hi:
                        state = dst
                        break
                else:
                    break
                p += 1
            return out
        raise TypeError(f"unknown expression {e!r}")


def direct_matches(grammar: ir.Grammar, data: bytes) -> bool:
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20000))
    try:
        m = _Matcher(grammar, data)
        return len(data) in m.ends(ir.Ref(grammar.start), 0)
    finally:
        sys.setrecursionlimit(limit)


def matches(grammar: ir.Grammar, data: bytes) -> bool:
    """Is ``data`` in the language of ``grammar``? Cross-checked with the Earley oracle when
    it exists."""
    got = direct_matches(grammar, data)
    if _reference is not None and len(data) < 400:
        other = _reference.matches(grammar, data)
        assert other == got, f"interpreters disagree on {data!r}: direct {got}, earley {other}"
    return got


def test_interpreter_basics():
    g = ir.Grammar(
        {
            "root": ir.seq(ir.lit("["), ir.opt(ir.Ref("items")), ir.lit("]")),
            "items": ir.seq(ir.Ref("v"), ir.star(ir.seq(ir.lit(","), ir.Ref("v")))),
            "v": ir.alt(ir.rep(ir.chars("a-c"), 1, 2), ir.Ref("root"), ir.chars("é")),
        },
        "root",
    )
    assert direct_matches(g, b"[]")
    assert direct_matches(g, b"[ab,[c],[]]")
    assert direct_matches(g, "[é]".encode())
    assert not direct_matches(g, b"[abc]")
    assert not direct_matches(g, b"[a,]")
    assert not direct_matches(g, b"[\xc3]")
