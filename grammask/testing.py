"""Hypothesis strategies for testing grammars and the engines that enforce them.

``from_grammar(text)`` draws strings of a grammar's language; with ``tokenizer_info=...`` it
draws token-id sequences that spell such strings, which a correct
:class:`grammask.GrammarMatcher` accepts token by token. Draws shrink toward short strings
(earlier, shorter alternatives; fewer repetitions; smaller characters) and, for token
sequences, toward fewer, longer tokens.

Requires ``hypothesis`` (a test dependency, not a runtime one).
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from .errors import GrammarError
from .grammar import _length_table, min_length
from .grammar.ir import (
    Alt,
    Automaton,
    ByteSet,
    CharSet,
    Empty,
    Expr,
    Grammar,
    Literal,
    Ref,
    Repeat,
    Seq,
)

__all__ = ["from_grammar"]

# Unbounded repetitions draw at most this many items beyond their minimum; bounded ones
# whose range is at most _FULL_RANGE wide draw from the whole range.
_EXTRA_REPEATS = 6
_FULL_RANGE = 32


def from_grammar(
    grammar: str | Grammar,
    *,
    syntax: str = "auto",
    start: str | None = None,
    tokenizer_info: Any = None,
    max_size: int = 64,
    max_depth: int = 24,
    as_bytes: bool | None = None,
    stop_token: bool = True,
) -> st.SearchStrategy:
    """A strategy drawing members of a grammar's language.

    Args:
        grammar: grammar text (parsed with :func:`grammask.grammar.parse_grammar`) or a
            :class:`~grammask.grammar.ir.Grammar`.
        syntax, start: as for :func:`~grammask.grammar.parse_grammar`.
        tokenizer_info: a :class:`grammask.TokenizerInfo`. When given, draws token-id lists
            instead of strings: a drawn string split into vocabulary tokens (special and stop
            tokens are never used for the split), followed by a stop token when
            ``stop_token`` is true and the tokenizer has one.
        max_size: soft limit on the length in bytes: once a draw has produced this many
            bytes, every open construct is finished by its shortest completion.
        max_depth: rule nesting beyond which rules are expanded to their shortest strings.
        as_bytes: draw ``bytes`` instead of ``str``. By default a grammar over bytes (with
            byte sets) draws ``bytes`` and every other grammar ``str``: the front-ends
            produce UTF-8 text languages, so those draws always decode.
        stop_token: end token-id lists with a stop token (with ``tokenizer_info`` only).

    Returns:
        A strategy of ``str`` (or ``bytes``), or of ``list[int]`` with ``tokenizer_info``.

    Raises:
        GrammarError: the grammar is malformed or its language is empty.
    """
    if isinstance(grammar, str):
        from .grammar import parse_grammar

        grammar = parse_grammar(grammar, syntax=syntax, start=start)
    elif not isinstance(grammar, Grammar):
        raise InvalidArgument(f"grammar must be text or a Grammar, not {type(grammar).__name__}")
    elif start is not None and start != grammar.start:
        grammar = Grammar(grammar.rules, start)
    if max_size < 0 or max_depth < 0:
        raise InvalidArgument("max_size and max_depth must be non-negative")
    sampler = _Sampler(grammar, max_size, max_depth)
    if as_bytes is None:
        as_bytes = sampler.has_bytesets
    strings = st.composite(lambda draw: sampler.draw(draw))()
    if tokenizer_info is not None:
        splitter = _Splitter(tokenizer_info, stop_token)
        return st.composite(lambda draw: splitter.split(draw, draw(strings)))()
    if as_bytes:
        return strings
    return strings.map(_decode)


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise GrammarError(
            f"drew {data!r}, which is not UTF-8: this grammar's language has byte strings "
            "that are not text; pass as_bytes=True"
        ) from None


# --------------------------------------------------------------------------- strings


class _Sampler:
    def __init__(self, grammar: Grammar, max_size: int, max_depth: int) -> None:
        self.rules = grammar.rules
        self.start = grammar.start
        self.max_size = max_size
        self.max_depth = max_depth
        self.lengths, self.ranks = _length_table(grammar)
        if self.lengths[self.start] is None:
            raise GrammarError(f"the language of rule {self.start!r} is empty: nothing to draw")
        self.automaton_cache: dict = {}
        self.shortest_rules: dict[str, bytes] = {}
        self.walk_cache: dict[int, tuple] = {}
        self.alt_cache: dict[int, tuple] = {}
        self.allowed_cache: dict[float, dict] = {}
        self.has_bytesets = any(_contains_byteset(body) for body in self.rules.values())

    # ----------------------------------------------------------------- lengths

    def length(self, expr: Expr) -> int | None:
        return min_length(expr, self.lengths, self.automaton_cache)

    def restricted_length(self, expr: Expr, limit: float) -> int | None:
        """Shortest length using only rules of rank below ``limit``."""
        if limit == float("inf"):
            return self.length(expr)
        allowed = self.allowed_cache.get(limit)
        if allowed is None:
            allowed = {n: (v if self.ranks.get(n, limit) < limit else None)
                       for n, v in self.lengths.items()}
            self.allowed_cache[limit] = allowed
        return min_length(expr, allowed, self.automaton_cache)

    # ----------------------------------------------------------------- shortest strings

    def shortest_rule(self, name: str) -> bytes:
        out = self.shortest_rules.get(name)
        if out is None:
            out = bytes(self.shortest(self.rules[name], self.ranks[name]))
            self.shortest_rules[name] = out
        return out

    def shortest(self, expr: Expr, limit: float) -> bytes:
        """A shortest string of ``expr`` that only expands rules of rank below ``limit``.
        Within a rule of rank k, such a string exists with rules of rank < k only, so the
        recursion is well-founded."""
        if isinstance(expr, Empty):
            return b""
        if isinstance(expr, Literal):
            return expr.data
        if isinstance(expr, ByteSet):
            return bytes([expr.ranges[0][0]])
        if isinstance(expr, CharSet):
            return chr(expr.ranges[0][0]).encode("utf-8")
        if isinstance(expr, Seq):
            return b"".join(self.shortest(i, limit) for i in expr.items)
        if isinstance(expr, Alt):
            best = None
            best_len = None
            for item in expr.items:
                n = self.restricted_length(item, limit)
                if n is not None and (best_len is None or n < best_len):
                    best, best_len = item, n
            if best is None:
                raise AssertionError("no finite alternative")  # excluded by the ranks
            return self.shortest(best, limit)
        if isinstance(expr, Repeat):
            if expr.min == 0:
                return b""
            return self.shortest(expr.item, limit) * expr.min
        if isinstance(expr, Ref):
            return self.shortest_rule(expr.name)
        if isinstance(expr, Automaton):
            return self.automaton_finish(expr, expr.start)
        raise TypeError(f"cannot draw from {expr!r}")

    # ----------------------------------------------------------------- random draws

    def draw(self, draw) -> bytes:
        out = bytearray()
        self.expand(draw, self.rules[self.start], out, 0)
        return bytes(out)

    def expand(self, draw, expr: Expr, out: bytearray, depth: int) -> None:
        if len(out) >= self.max_size:
            out += self.shortest(expr, float("inf"))
            return
        if isinstance(expr, Empty):
            return
        if isinstance(expr, Literal):
            out += expr.data
        elif isinstance(expr, (ByteSet, CharSet)):
            ranges = expr.ranges
            lo, hi = ranges[draw(st.integers(0, len(ranges) - 1))] if len(ranges) > 1 \
                else ranges[0]
            c = draw(st.integers(lo, hi))
            out += bytes([c]) if isinstance(expr, ByteSet) else chr(c).encode("utf-8")
        elif isinstance(expr, Seq):
            for item in expr.items:
                self.expand(draw, item, out, depth)
        elif isinstance(expr, Alt):
            options = self.alternatives(expr)
            self.expand(draw, options[draw(st.integers(0, len(options) - 1))], out, depth)
        elif isinstance(expr, Repeat):
            self.repeat(draw, expr, out, depth)
        elif isinstance(expr, Ref):
            if depth >= self.max_depth:
                out += self.shortest_rule(expr.name)
            else:
                self.expand(draw, self.rules[expr.name], out, depth + 1)
        elif isinstance(expr, Automaton):
            self.walk(draw, expr, out)
        else:  # Nothing never gets here: alternatives and repeats skip empty languages
            raise TypeError(f"cannot draw from {expr!r}")

    def alternatives(self, expr: Alt) -> list[Expr]:
        """The alternatives that derive something, shortest first (shrinking goes there)."""
        key = id(expr)
        cached = self.alt_cache.get(key)
        if cached is None or cached[0] is not expr:
            items = [(self.length(i), k, i) for k, i in enumerate(expr.items)]
            ordered = [i for n, _k, i in sorted(t for t in items if t[0] is not None)]
            cached = (expr, ordered)
            self.alt_cache[key] = cached
        return cached[1]

    def repeat(self, draw, expr: Repeat, out: bytearray, depth: int) -> None:
        if self.length(expr.item) is None:  # only the empty repetition is possible
            return
        lo = expr.min
        if expr.max is not None and expr.max - lo <= _FULL_RANGE:
            hi = expr.max
        else:
            hi = lo + _EXTRA_REPEATS
            if expr.max is not None:
                hi = min(hi, expr.max)
        count = draw(st.integers(lo, hi)) if hi > lo else lo
        for k in range(count):
            if len(out) >= self.max_size and k >= lo:
                break
            self.expand(draw, expr.item, out, depth)

    # ----------------------------------------------------------------- automata

    def walk_tables(self, a: Automaton) -> tuple[list, list]:
        """Per state: distance to an accepting state (None: dead) and the first edge of a
        shortest way there."""
        key = id(a)
        cached = self.walk_cache.get(key)
        if cached is not None and cached[0] is a:
            return cached[1], cached[2]
        n = len(a.edges)
        incoming: list[list[tuple[int, int]]] = [[] for _ in range(n)]
        for s, edges in enumerate(a.edges):
            for lo, _hi, dst in edges:
                incoming[dst].append((s, lo))
        dist: list[int | None] = [0 if a.accepting[s] else None for s in range(n)]
        nxt: list[tuple[int, int] | None] = [None] * n
        frontier = [s for s in range(n) if a.accepting[s]]
        while frontier:
            new = []
            for t in frontier:
                for s, byte in incoming[t]:
                    if dist[s] is None:
                        dist[s] = dist[t] + 1
                        nxt[s] = (byte, t)
                        new.append(s)
            frontier = new
        self.walk_cache[key] = (a, dist, nxt)
        return dist, nxt

    def automaton_finish(self, a: Automaton, state: int) -> bytes:
        _dist, nxt = self.walk_tables(a)
        out = bytearray()
        while not a.accepting[state]:
            byte, state = nxt[state]
            out.append(byte)
        return bytes(out)

    def walk(self, draw, a: Automaton, out: bytearray) -> None:
        dist, _nxt = self.walk_tables(a)
        state = a.start
        while len(out) < self.max_size:
            live = [(lo, hi, dst) for lo, hi, dst in a.edges[state] if dist[dst] is not None]
            n_options = len(live) + (1 if a.accepting[state] else 0)
            if n_options == 0:
                break
            choice = draw(st.integers(0, n_options - 1)) if n_options > 1 else 0
            if a.accepting[state]:
                if choice == 0:
                    return
                choice -= 1
            lo, hi, dst = live[choice]
            out.append(draw(st.integers(lo, hi)) if hi > lo else lo)
            state = dst
        out += self.automaton_finish(a, state)


def _contains_byteset(expr: Expr) -> bool:
    stack = [expr]
    while stack:
        e = stack.pop()
        if isinstance(e, ByteSet):
            return True
        if isinstance(e, (Seq, Alt)):
            stack.extend(e.items)
        elif isinstance(e, Repeat):
            stack.append(e.item)
    return False


# --------------------------------------------------------------------------- tokens


class _Splitter:
    """Splits byte strings into vocabulary tokens, drawing the split."""

    def __init__(self, tokenizer_info: Any, stop_token: bool) -> None:
        excluded = set(tokenizer_info.special_token_ids) | set(tokenizer_info.stop_token_ids)
        by_bytes: dict[bytes, list[int]] = {}
        for tid, data in enumerate(tokenizer_info.decoded_vocab):
            if data and tid not in excluded:
                by_bytes.setdefault(bytes(data), []).append(tid)
        if not by_bytes:
            raise InvalidArgument("the vocabulary has no token that spells text")
        self.by_bytes = by_bytes
        self.max_len = max(len(b) for b in by_bytes)
        stops = list(tokenizer_info.stop_token_ids)
        self.stop = stops[0] if stop_token and stops else None

    def split(self, draw, data: bytes) -> list[int]:
        from hypothesis import reject

        ids: list[int] = []
        pos = 0
        while pos < len(data):
            # Candidates longest first: shrinking moves toward the fewest tokens.
            cands = [
                (k, self.by_bytes[data[pos : pos + k]])
                for k in range(min(self.max_len, len(data) - pos), 0, -1)
                if data[pos : pos + k] in self.by_bytes
            ]
            if not cands:
                reject()  # the vocabulary cannot spell this string
            k, same = cands[draw(st.integers(0, len(cands) - 1))] if len(cands) > 1 else cands[0]
            ids.append(same[draw(st.integers(0, len(same) - 1))] if len(same) > 1 else same[0])
            pos += k
        if self.stop is not None:
            ids.append(self.stop)
        return ids
