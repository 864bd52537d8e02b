"""Helpers for the regex tests: a direct matcher over the IR and a generator of IR strings.

The matcher follows the IR's definition literally (sets of end positions over bytes), so it is
an oracle independent of the automaton code under test. It handles every node a regex produces
(no Refs).
"""

from __future__ import annotations

import random

from grammask.grammar import ir


def _decode_at(data: bytes, i: int):
    """(code point, length) of the UTF-8 character at ``i``, or None if there is none."""
    if i >= len(data):
        return None
    b = data[i]
    n = 1 if b < 0x80 else 2 if 0xC2 <= b < 0xE0 else 3 if 0xE0 <= b < 0xF0 else \
        4 if 0xF0 <= b < 0xF5 else 0
    if n == 0 or i + n > len(data):
        return None
    try:
        ch = data[i:i + n].decode("utf-8")
    except UnicodeDecodeError:
        return None
    return ord(ch), n


def _in(ranges, c) -> bool:
    return any(lo <= c <= hi for lo, hi in ranges)


class IrMatcher:
    def __init__(self, expr: ir.Expr):
        self.expr = expr

    def matches(self, data: bytes) -> bool:
        self.data = data
        self.memo: dict = {}
        return len(data) in self.ends(self.expr, 0)

    def ends(self, e: ir.Expr, i: int) -> frozenset:
        key = (id(e), i)
        hit = self.memo.get(key)
        if hit is not None:
            return hit
        self.memo[key] = frozenset()  # guards against (impossible) left recursion
        res = frozenset(self._ends(e, i))
        self.memo[key] = res
        return res

    def _ends(self, e, i):
        data = self.data
        if isinstance(e, ir.Empty):
            return {i}
        if isinstance(e, ir.Nothing):
            return set()
        if isinstance(e, ir.Literal):
            return {i + len(e.data)} if data.startswith(e.data, i) else set()
        if isinstance(e, ir.ByteSet):
            return {i + 1} if i < len(data) and _in(e.ranges, data[i]) else set()
        if isinstance(e, ir.CharSet):
            d = _decode_at(data, i)
            return {i + d[1]} if d and _in(e.ranges, d[0]) else set()
        if isinstance(e, ir.Seq):
            cur = {i}
            for item in e.items:
                cur = set().union(*(self.ends(item, p) for p in cur)) if cur else set()
            return cur
        if isinstance(e, ir.Alt):
            return set().union(*(self.ends(item, i) for item in e.items))
        if isinstance(e, ir.Repeat):
            results = {i} if e.min == 0 else set()
            reach = {i}
            done = set()
            k = 0
            while reach:
                k += 1
                if e.max is not None and k > e.max:
                    break
                nxt = set().union(*(self.ends(e.item, p) for p in reach))
                if k >= e.min:
                    results |= nxt
                    if e.max is None:
                        reach = nxt - done
                        done |= nxt
                        continue
                    if nxt == reach:
                        break
                reach = nxt
            return results
        if isinstance(e, ir.Automaton):
            out = set()
            s = e.start
            p = i
            if e.accepting[s]:
                out.add(p)
            while p < len(data):
                b = data[p]
                for lo, hi, d in e.edges[s]:
                    if lo <= b <= hi:
                        s = d
                        break
                else:
                    break
                p += 1
                if e.accepting[s]:
                    out.add(p)
            return out
        raise TypeError(e)


def ir_matches(expr: ir.Expr, data: bytes) -> bool:
    return IrMatcher(expr).matches(data)


# --------------------------------------------------------------------------- generation


def _pick_char(ranges, rnd: random.Random) -> int:
    lo, hi = ranges[rnd.randrange(len(ranges))]
    r = rnd.random()
    if r < 0.3:
        return lo
    if r < 0.5:
        return hi
    return rnd.randint(lo, hi)


def _automaton_distances(a: ir.Automaton) -> list:
    n = len(a.edges)
    dist = [None] * n
    frontier = [s for s in range(n) if a.accepting[s]]
    for s in frontier:
        dist[s] = 0
    rev = [[] for _ in range(n)]
    for s in range(n):
        for _, _, d in a.edges[s]:
            rev[d].append(s)
    k = 0
    while frontier:
        k += 1
        nxt = []
        for s in frontier:
            for p in rev[s]:
                if dist[p] is None:
                    dist[p] = k
                    nxt.append(p)
        frontier = nxt
    return dist


_DIST: dict = {}


def generate(expr: ir.Expr, rnd: random.Random, budget: int = 40) -> bytes | None:
    """A random byte string of the expression's language (None if none was found)."""
    out = bytearray()
    ok = _gen(expr, rnd, out, [budget])
    return bytes(out) if ok else None


def _gen(e, rnd, out: bytearray, budget) -> bool:
    if isinstance(e, ir.Empty):
        return True
    if isinstance(e, ir.Nothing):
        return False
    if isinstance(e, ir.Literal):
        out += e.data
        return True
    if isinstance(e, ir.ByteSet):
        out.append(_pick_char(e.ranges, rnd))
        return True
    if isinstance(e, ir.CharSet):
        out += chr(_pick_char(e.ranges, rnd)).encode("utf-8")
        return True
    if isinstance(e, ir.Seq):
        return all(_gen(item, rnd, out, budget) for item in e.items)
    if isinstance(e, ir.Alt):
        items = list(e.items)
        rnd.shuffle(items)
        for item in items:
            mark = len(out)
            if _gen(item, rnd, out, budget):
                return True
            del out[mark:]
        return False
    if isinstance(e, ir.Repeat):
        hi = e.min + 3 if e.max is None else min(e.max, e.min + 3)
        if budget[0] <= 0:
            hi = e.min
        count = rnd.randint(e.min, hi)
        budget[0] -= count
        return all(_gen(e.item, rnd, out, budget) for _ in range(count))
    if isinstance(e, ir.Automaton):
        dist = _DIST.get(id(e))
        if dist is None or dist[0] is not e:
            dist = _DIST[id(e)] = (e, _automaton_distances(e))
        dist = dist[1]
        s = e.start
        if dist[s] is None:
            return False
        steps = 0
        while True:
            if e.accepting[s] and (rnd.random() < 0.25 or steps > budget[0]):
                return True
            choices = [(lo, hi, d) for lo, hi, d in e.edges[s] if dist[d] is not None]
            if steps > budget[0]:
                choices = [c for c in choices if dist[c[2]] < dist[s]] or choices
            if not choices:
                return e.accepting[s]
            lo, hi, d = choices[rnd.randrange(len(choices))]
            out.append(_pick_char(((lo, hi),), rnd))
            s = d
            steps += 1
    raise TypeError(e)
