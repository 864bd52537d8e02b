"""The grammar IR: what every front-end (Lark, GBNF, regex, JSON Schema) produces.

A :class:`Grammar` is a set of named rules and a start rule. A rule body is an :class:`Expr`
tree: sequences, alternatives, bounded or unbounded repetition, literals, character or byte
sets, references to other rules, and precompiled byte automata (for regex constructs that
only an automaton expresses, such as lookarounds or leftmost-first match semantics).

Everything is immutable and hashable, so passes can memoize on nodes. Text is Unicode in
:class:`CharSet` and bytes everywhere else; :mod:`grammask.grammar.passes` lowers character
sets to UTF-8 byte sequences, so that the automata only ever see bytes.

Build expressions with the helpers at the bottom (:func:`seq`, :func:`alt`, :func:`rep`,
:func:`lit`, :func:`chars`...): they flatten and simplify, so front-ends need not, and they
share equal composite nodes process-wide (:func:`intern_node`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np

from ..errors import GrammarError

MAX_UNICODE = 0x10FFFF
_SURROGATES = (0xD800, 0xDFFF)


class Expr:
    """Base class of IR expressions. Subclasses are frozen dataclasses."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Empty(Expr):
    """Matches the empty string."""


@dataclass(frozen=True, slots=True)
class Nothing(Expr):
    """Matches no string at all (the empty language)."""


@dataclass(frozen=True, slots=True)
class Literal(Expr):
    """Matches exactly these bytes (UTF-8 for text). Never empty: use :class:`Empty`."""

    data: bytes

    # written out: the generated ones build a tuple per call, and the converters hash and
    # compare literals at every node they build
    def __hash__(self) -> int:
        return hash(self.data)

    def __eq__(self, other) -> bool:
        return self is other or (type(other) is Literal and self.data == other.data)


@dataclass(frozen=True, slots=True)
class ByteSet(Expr):
    """Matches one byte in any of the inclusive ranges (sorted, disjoint, non-adjacent)."""

    ranges: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class CharSet(Expr):
    """Matches one Unicode scalar value (encoded as UTF-8) in any of the inclusive code point
    ranges (sorted, disjoint, non-adjacent, surrogates excluded)."""

    ranges: tuple[tuple[int, int], ...]


# The composite nodes keep their hash (computed once, from their children's kept hashes):
# passes memoize on nodes by value, and a tree's hash would otherwise be recomputed from its
# leaves at every lookup. A pickled node is rebuilt through its constructor, so the kept hash
# is never carried to a process whose string hashes differ.


# The composite nodes' constructors are written out: the generated ones set each field through
# object.__setattr__ and then call a __post_init__ (twice the time, and the converters build
# thousands of nodes per grammar).
_set = object.__setattr__


class _Kept(Expr):
    """A composite node whose hash is kept; ``_fields()`` are its values, in order."""

    __slots__ = ()

    def _fields(self) -> tuple:
        raise NotImplementedError

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other) -> bool:
        return self is other or (type(other) is type(self) and self._hash == other._hash
                                 and self._fields() == other._fields())

    def __reduce__(self):
        return type(self), self._fields()


@dataclass(frozen=True, slots=True, eq=False)
class Seq(_Kept):
    """Matches the concatenation of its items (two or more)."""

    items: tuple[Expr, ...]
    _hash: int = field(default=0, init=False, repr=False, compare=False)
    _refs: frozenset | None = field(default=None, init=False, repr=False, compare=False)

    def __init__(self, items: tuple[Expr, ...]) -> None:
        _set(self, "items", items)
        _set(self, "_hash", hash((Seq, items)))
        _set(self, "_refs", None)

    def _fields(self) -> tuple:
        return (self.items,)


@dataclass(frozen=True, slots=True, eq=False)
class Alt(_Kept):
    """Matches any one of its items (two or more). Order carries no meaning."""

    items: tuple[Expr, ...]
    _hash: int = field(default=0, init=False, repr=False, compare=False)
    _refs: frozenset | None = field(default=None, init=False, repr=False, compare=False)

    def __init__(self, items: tuple[Expr, ...]) -> None:
        _set(self, "items", items)
        _set(self, "_hash", hash((Alt, items)))
        _set(self, "_refs", None)

    def _fields(self) -> tuple:
        return (self.items,)


@dataclass(frozen=True, slots=True, eq=False)
class Repeat(_Kept):
    """Matches ``item`` repeated between ``min`` and ``max`` times (``max=None``: unbounded)."""

    item: Expr
    min: int
    max: int | None
    _hash: int = field(default=0, init=False, repr=False, compare=False)
    _refs: frozenset | None = field(default=None, init=False, repr=False, compare=False)

    def __init__(self, item: Expr, min: int, max: int | None) -> None:
        _set(self, "item", item)
        _set(self, "min", min)
        _set(self, "max", max)
        _set(self, "_hash", hash((Repeat, item, min, max)))
        _set(self, "_refs", None)

    def _fields(self) -> tuple:
        return (self.item, self.min, self.max)


@dataclass(frozen=True, slots=True)
class Ref(Expr):
    """Matches what the rule ``name`` matches."""

    name: str

    def __hash__(self) -> int:  # written out, as Literal's
        return hash(self.name)

    def __eq__(self, other) -> bool:
        return self is other or (type(other) is Ref and self.name == other.name)


@dataclass(frozen=True, slots=True, eq=False)
class Automaton(Expr):
    """Matches the language of a precompiled deterministic byte automaton.

    ``edges[s]`` lists ``(lo, hi, target)`` byte-range transitions of state ``s`` (disjoint
    ranges); ``accepting[s]`` says whether ``s`` is final. Equality is identity: two automata
    built separately are different nodes even when their languages are equal.
    """

    start: int
    edges: tuple[tuple[tuple[int, int, int], ...], ...]
    accepting: tuple[bool, ...]
    label: str = field(default="automaton", compare=False)
    # (int32 (src, lo, hi, dst) rows, accepting states): made by the automaton builder when
    # it first emits the node, or by a front end that has them at hand
    _rows: object = field(default=None, init=False, repr=False, compare=False)


class RowsAutomaton(Automaton):
    """An :class:`Automaton` made from int32 ``(src, lo, hi, dst)`` rows (sorted by source
    state, then byte): the automaton builder reads the rows; ``edges`` is made from them
    when something first asks for it (front ends that build large automata in a kernel
    skip the tuples)."""

    __slots__ = ("_edges",)

    def __init__(self, start: int, rows: np.ndarray, accepting: tuple[bool, ...],
                 label: str = "automaton") -> None:
        _set(self, "start", start)
        _set(self, "accepting", accepting)
        _set(self, "label", label)
        _set(self, "_rows", (rows, [s for s, acc in enumerate(accepting) if acc]))
        _set(self, "_edges", None)

    @property
    def edges(self) -> tuple[tuple[tuple[int, int, int], ...], ...]:
        edges = self._edges
        if edges is None:
            rows = self._rows[0]
            cut = np.searchsorted(rows[:, 0], np.arange(len(self.accepting) + 1))
            flat = rows[:, 1:].tolist()
            edges = tuple(tuple(tuple(e) for e in flat[cut[s]:cut[s + 1]])
                          for s in range(len(self.accepting)))
            _set(self, "_edges", edges)
        return edges

    def __reduce__(self):
        return RowsAutomaton, (self.start, self._rows[0], self.accepting, self.label)


@dataclass(frozen=True)
class Grammar:
    """A grammar: named rules and the rule the language starts from.

    ``rules`` keeps insertion order. Rule names are free-form strings; front-ends are
    responsible for keeping the names they generate apart from the user's.
    """

    rules: Mapping[str, Expr]
    start: str

    def __post_init__(self) -> None:
        if self.start not in self.rules:
            raise GrammarError(f"start rule {self.start!r} is not defined")

    # Front-end entry points; imported lazily so that this module stays a leaf.
    @staticmethod
    def from_lark(text: str, *, start: str | None = None) -> "Grammar":
        """Parse a grammar in Lark syntax. Raises :class:`GrammarError`."""
        from .ebnf import grammar_from_lark

        return grammar_from_lark(text, start=start)

    @staticmethod
    def from_gbnf(text: str, *, start: str | None = None) -> "Grammar":
        """Parse a grammar in GBNF (llama.cpp) syntax. Raises :class:`GrammarError`."""
        from .gbnf import grammar_from_gbnf

        return grammar_from_gbnf(text, start=start)

    @staticmethod
    def from_regex(pattern: str, *, flags: int = 0) -> "Grammar":
        """A grammar whose language is the strings ``re.fullmatch(pattern, s)`` accepts."""
        from .regex import regex_to_expr

        return Grammar({"root": regex_to_expr(pattern, flags=flags)}, "root")

    @staticmethod
    def from_json_schema(schema, **options) -> "Grammar":
        """A grammar for the JSON texts that validate against ``schema``.

        Options are those of :meth:`grammask.GrammarCompiler.compile_json_schema`.
        """
        from .json_schema import grammar_from_json_schema

        return grammar_from_json_schema(schema, **options)

    def __str__(self) -> str:
        return "\n".join(f"{name} ::= {to_text(body)}" for name, body in self.rules.items())


# --------------------------------------------------------------------------- construction

# Composite nodes built through the helpers below are hash-consed: an equal node built
# before is returned instead, so equal subtrees of different rules and grammars (a JSON
# string, any JSON value) are one object. Comparisons of such trees stop at identity, and
# what passes keep per node (refs_of, the analyses' memos) is computed once per process.
# Bounded: past _INTERN_MAX nodes the table starts again (nodes stay valid, only unshared).
_INTERNED: dict = {}
_INTERN_MAX = 1 << 16


def intern_node(node: Expr) -> Expr:
    """The node equal to ``node`` that the process keeps (``node`` itself the first time)."""
    hit = _INTERNED.get(node)
    if hit is not None:
        return hit
    if len(_INTERNED) >= _INTERN_MAX:
        _INTERNED.clear()
    _INTERNED[node] = node
    return node


EMPTY = Empty()
NOTHING = Nothing()


def lit(text: str | bytes) -> Expr:
    """A literal; text is encoded as UTF-8. The empty literal is :data:`EMPTY`."""
    data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    return Literal(data) if data else EMPTY


def seq(*items: Expr | Iterable[Expr]) -> Expr:
    """Concatenation, flattened: adjacent literals merge, Empty vanishes, Nothing absorbs."""
    flat: list[Expr] = []
    run = None  # the bytes of adjacent literals not yet in flat
    one = None  # the literal itself while the run is one literal
    for group in items:
        for item in ((group,) if isinstance(group, Expr) else group):
            t = type(item)
            if t is Literal:
                if run is None:
                    run, one = item.data, item
                else:
                    run += item.data
                    one = None
                continue
            if t is Seq:
                for part in item.items:
                    if type(part) is Literal:
                        if run is None:
                            run, one = part.data, part
                        else:
                            run += part.data
                            one = None
                        continue
                    if run is not None:
                        flat.append(one if one is not None else Literal(run))
                        run = None
                    flat.append(part)
                continue
            if t is Empty:
                continue
            if t is Nothing:
                return NOTHING
            if run is not None:
                flat.append(one if one is not None else Literal(run))
                run = None
            flat.append(item)
    if run is not None:
        flat.append(one if one is not None else Literal(run))
    if not flat:
        return EMPTY
    if len(flat) == 1:
        return flat[0]
    return intern_node(Seq(tuple(flat)))


def alt(*items: Expr | Iterable[Expr]) -> Expr:
    """Alternation, flattened and deduplicated (first occurrence kept); Nothing vanishes."""
    flat: list[Expr] = []
    seen: set = set()
    for group in items:
        for item in ((group,) if isinstance(group, Expr) else group):
            for part in (item.items if type(item) is Alt else (item,)):
                if type(part) is Nothing or part in seen:
                    continue
                seen.add(part)
                flat.append(part)
    if not flat:
        return NOTHING
    if len(flat) == 1:
        return flat[0]
    return intern_node(Alt(tuple(flat)))


def rep(item: Expr, lo: int = 0, hi: int | None = None) -> Expr:
    """``item`` repeated ``lo`` to ``hi`` times (``hi=None``: unbounded)."""
    if lo < 0 or (hi is not None and hi < lo):
        raise GrammarError(f"invalid repetition bounds {{{lo},{hi}}}")
    if hi == 0:
        return EMPTY
    if isinstance(item, Empty):
        return EMPTY
    if isinstance(item, Nothing):
        return EMPTY if lo == 0 else NOTHING
    if lo == 1 and hi == 1:
        return item
    return intern_node(Repeat(item, lo, hi))


def opt(item: Expr) -> Expr:
    """``item?``"""
    return rep(item, 0, 1)


def star(item: Expr) -> Expr:
    """``item*``"""
    return rep(item, 0, None)


def plus(item: Expr) -> Expr:
    """``item+``"""
    return rep(item, 1, None)


def ref(name: str) -> Ref:
    return Ref(name)


def char_ranges(ranges: Iterable[tuple[int, int]]) -> Expr:
    """One character from the union of inclusive code point ranges (surrogates removed)."""
    norm = normalize_ranges(ranges, MAX_UNICODE)
    norm = subtract_ranges(norm, (_SURROGATES,))
    if not norm:
        return NOTHING
    return CharSet(norm)


def chars(spec: str) -> Expr:
    """A character set from a compact spec such as ``"a-zA-Z_"`` (no escapes, no negation)."""
    ranges = []
    i = 0
    while i < len(spec):
        if i + 2 < len(spec) and spec[i + 1] == "-":
            ranges.append((ord(spec[i]), ord(spec[i + 2])))
            i += 3
        else:
            ranges.append((ord(spec[i]), ord(spec[i])))
            i += 1
    return char_ranges(ranges)


def byte_ranges(ranges: Iterable[tuple[int, int]]) -> Expr:
    """One byte from the union of inclusive byte ranges."""
    norm = normalize_ranges(ranges, 255)
    return ByteSet(norm) if norm else NOTHING


def any_char() -> Expr:
    """Any Unicode scalar value."""
    return char_ranges([(0, MAX_UNICODE)])


def negate_chars(ranges: Iterable[tuple[int, int]]) -> Expr:
    """Any character outside the ranges."""
    return char_ranges(subtract_ranges(((0, MAX_UNICODE),), normalize_ranges(ranges, MAX_UNICODE)))


# --------------------------------------------------------------------------- range algebra


def normalize_ranges(ranges: Iterable[tuple[int, int]], top: int) -> tuple[tuple[int, int], ...]:
    """Sort, clip to ``[0, top]`` and merge overlapping or adjacent inclusive ranges."""
    items = sorted((max(0, lo), min(top, hi)) for lo, hi in ranges if lo <= hi)
    out: list[list[int]] = []
    for lo, hi in items:
        if lo > hi:
            continue
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return tuple((lo, hi) for lo, hi in out)


def subtract_ranges(
    ranges: Sequence[tuple[int, int]], minus: Sequence[tuple[int, int]]
) -> tuple[tuple[int, int], ...]:
    """``ranges`` minus ``minus``; both normalized."""
    out = []
    for lo, hi in ranges:
        cur = lo
        for mlo, mhi in minus:
            if mhi < cur or mlo > hi:
                continue
            if mlo > cur:
                out.append((cur, mlo - 1))
            cur = max(cur, mhi + 1)
            if cur > hi:
                break
        if cur <= hi:
            out.append((cur, hi))
    return tuple(out)


def intersect_ranges(
    a: Sequence[tuple[int, int]], b: Sequence[tuple[int, int]]
) -> tuple[tuple[int, int], ...]:
    """Intersection of two normalized range lists."""
    out = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo = max(a[i][0], b[j][0])
        hi = min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


# --------------------------------------------------------------------------- inspection


_NO_REFS: frozenset = frozenset()


def refs_of(expr: Expr) -> frozenset[str]:
    """Names of the rules ``expr`` refers to. Kept on every composite node on the way (the
    nodes are immutable and shared between rules and grammars: each is walked once)."""
    t = type(expr)
    if t is Ref:
        return frozenset((expr.name,))
    if t is not Seq and t is not Alt and t is not Repeat:
        return _NO_REFS
    if expr._refs is not None:
        return expr._refs
    # post-order without recursion (IR trees can be deep)
    stack = [(expr, False)]
    while stack:
        e, ready = stack.pop()
        if e._refs is not None:
            continue
        kids = (e.item,) if type(e) is Repeat else e.items
        if not ready:
            stack.append((e, True))
            stack.extend((k, False) for k in kids
                         if type(k) in _COMPOSITE and k._refs is None)
            continue
        names = set()
        for k in kids:
            tk = type(k)
            if tk is Ref:
                names.add(k.name)
            elif tk in _COMPOSITE:
                names.update(k._refs)
        object.__setattr__(e, "_refs", frozenset(names) if names else _NO_REFS)
    return expr._refs


_COMPOSITE = (Seq, Alt, Repeat)


def to_text(expr: Expr) -> str:
    """A readable EBNF-like rendering, for messages and debugging."""
    if isinstance(expr, Empty):
        return '""'
    if isinstance(expr, Nothing):
        return "<nothing>"
    if isinstance(expr, Literal):
        return repr(expr.data)[1:]
    if isinstance(expr, (ByteSet, CharSet)):
        fmt = (lambda c: f"\\x{c:02x}") if isinstance(expr, ByteSet) else _fmt_char
        body = "".join(fmt(lo) if lo == hi else f"{fmt(lo)}-{fmt(hi)}" for lo, hi in expr.ranges)
        return f"[{body}]"
    if isinstance(expr, Seq):
        return " ".join(_paren(i, Alt) for i in expr.items)
    if isinstance(expr, Alt):
        return " | ".join(to_text(i) for i in expr.items)
    if isinstance(expr, Repeat):
        inner = _paren(expr.item, (Alt, Seq))
        if (expr.min, expr.max) == (0, None):
            return inner + "*"
        if (expr.min, expr.max) == (1, None):
            return inner + "+"
        if (expr.min, expr.max) == (0, 1):
            return inner + "?"
        return f"{inner}{{{expr.min},{'' if expr.max is None else expr.max}}}"
    if isinstance(expr, Ref):
        return expr.name
    if isinstance(expr, Automaton):
        return f"<{expr.label}: {len(expr.edges)} states>"
    raise TypeError(f"not an IR expression: {expr!r}")


def _fmt_char(c: int) -> str:
    ch = chr(c)
    if ch.isprintable() and ch not in "[]-\\^":
        return ch
    return f"\\u{{{c:x}}}"


def _paren(expr: Expr, kinds) -> str:
    text = to_text(expr)
    return f"({text})" if isinstance(expr, kinds) else text
