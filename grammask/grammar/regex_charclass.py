"""Character sets of Python ``re`` (str patterns) as Unicode code point ranges.

Everything here is derived from the running Python itself, so that a class means exactly what
``re`` makes of it: ``\\d \\w \\s`` are found by scanning every code point with ``re`` once
(lazily, cached), and case-insensitive sets are found by asking ``re`` about the few thousand
code points that take part in case mappings at all. A code point outside that "case universe"
is its own lowercase and nobody else's, so for it ``re.IGNORECASE`` changes nothing and the
case-sensitive answer is exact.
"""

from __future__ import annotations

import array
import re
from functools import cache, lru_cache

from .ir import MAX_UNICODE, normalize_ranges, subtract_ranges

try:  # Python >= 3.11
    from re import _constants as _sre_c
except ImportError:  # pragma: no cover - Python 3.10
    import sre_constants as _sre_c  # type: ignore[no-redef]

Ranges = tuple[tuple[int, int], ...]

SURROGATES: Ranges = ((0xD800, 0xDFFF),)
ALL_CHARS: Ranges = ((0, 0xD7FF), (0xE000, MAX_UNICODE))
NEWLINE: Ranges = ((10, 10),)

_CATEGORY = {
    _sre_c.CATEGORY_DIGIT: ("\\d", False),
    _sre_c.CATEGORY_NOT_DIGIT: ("\\d", True),
    _sre_c.CATEGORY_SPACE: ("\\s", False),
    _sre_c.CATEGORY_NOT_SPACE: ("\\s", True),
    _sre_c.CATEGORY_WORD: ("\\w", False),
    _sre_c.CATEGORY_NOT_WORD: ("\\w", True),
}
_CATEGORY_SRC = {
    _sre_c.CATEGORY_DIGIT: "\\d",
    _sre_c.CATEGORY_NOT_DIGIT: "\\D",
    _sre_c.CATEGORY_SPACE: "\\s",
    _sre_c.CATEGORY_NOT_SPACE: "\\S",
    _sre_c.CATEGORY_WORD: "\\w",
    _sre_c.CATEGORY_NOT_WORD: "\\W",
}


def complement(ranges: Ranges) -> Ranges:
    """All scalar values (surrogates excluded) outside ``ranges``."""
    return subtract_ranges(ALL_CHARS, ranges)


def clean(ranges) -> Ranges:
    """Normalize and drop surrogates (they cannot appear in UTF-8 text)."""
    return subtract_ranges(normalize_ranges(ranges, MAX_UNICODE), SURROGATES)


# --------------------------------------------------------------------------- \d \w \s


@cache
def _all_text() -> str:
    """Every scalar value, in order (index i is code point i below 0xD800, i + 0x800 above)."""
    low = array.array("I", range(0xD800)).tobytes().decode("utf-32-le")
    high = array.array("I", range(0xE000, MAX_UNICODE + 1)).tobytes().decode("utf-32-le")
    return low + high


def _index_to_cp(i: int) -> int:
    return i if i < 0xD800 else i + 0x800


def _spans_to_ranges(spans) -> Ranges:
    out = []
    for a, b in spans:
        lo, hi = _index_to_cp(a), _index_to_cp(b - 1)
        if a < 0xD800 <= b - 1:
            out.append((lo, 0xD7FF))
            out.append((0xE000, hi))
        else:
            out.append((lo, hi))
    return normalize_ranges(out, MAX_UNICODE)


@cache
def _positive_category(src: str, ascii_only: bool) -> Ranges:
    """The code points ``re`` puts in ``\\d``, ``\\w`` or ``\\s`` (Unicode or ASCII flavour)."""
    if ascii_only:
        # The ASCII flavours only ever contain ASCII characters (sre tests ch < 128).
        text = "".join(map(chr, range(128)))
        spans = [m.span() for m in re.finditer(src + "+", text, re.ASCII)]
    else:
        spans = [m.span() for m in re.finditer(src + "+", _all_text())]
    return _spans_to_ranges(spans)


def category_ranges(category, ascii_only: bool) -> Ranges:
    """Ranges of an sre CATEGORY code (``\\d``, ``\\W``...) under the given flavour."""
    src, negated = _CATEGORY[category]
    pos = _positive_category(src, ascii_only)
    return complement(pos) if negated else pos


def word_ranges(ascii_only: bool) -> Ranges:
    return _positive_category("\\w", ascii_only)


# --------------------------------------------------------------------------- case folding


@cache
def _case_universe() -> tuple[Ranges, str]:
    """The code points that take part in any case relation sre knows, and them as a string.

    Outside this set ``_sre.unicode_tolower(c) == c`` and no other code point lowers to ``c``,
    so IGNORECASE cannot change whether such a code point is matched.
    """
    try:
        import _sre

        iscased = _sre.unicode_iscased
        tolower = _sre.unicode_tolower
    except (ImportError, AttributeError):  # pragma: no cover - other implementations

        def iscased(c: int) -> bool:
            ch = chr(c)
            return ch.lower() != ch or ch.upper() != ch

        def tolower(c: int) -> int:
            low = chr(c).lower()
            return ord(low) if len(low) == 1 else c

    universe = set()
    for c in filter(iscased, range(MAX_UNICODE + 1)):
        universe.add(c)
        universe.add(tolower(c))
        up = chr(c).upper()
        if len(up) == 1:
            universe.add(ord(up))
    for key, values in _extra_cases().items():
        universe.add(key)
        universe.update(values)
    universe -= set(range(0xD800, 0xE000))
    cps = sorted(universe)
    return normalize_ranges(((c, c) for c in cps), MAX_UNICODE), "".join(map(chr, cps))


def _extra_cases() -> dict:
    try:
        from re._casefix import _EXTRA_CASES  # Python >= 3.11

        return _EXTRA_CASES
    except ImportError:  # pragma: no cover - Python 3.10
        try:
            import sre_compile

            return getattr(sre_compile, "_ignorecase_fixes", {})
        except ImportError:
            return {}


def _ask_re_in_universe(source: str, flags: int) -> Ranges:
    """Which code points of the case universe does the one-character pattern match?"""
    _, text = _case_universe()
    rx = re.compile(source, flags | re.DOTALL)
    cps = [ord(text[m.start()]) for m in rx.finditer(text)]
    return normalize_ranges(((c, c) for c in cps), MAX_UNICODE)


def _cp_escape(c: int) -> str:
    return f"\\U{c:08x}"


def _items_source(items) -> str:
    parts = []
    for op, av in items:
        if op is _sre_c.NEGATE:
            parts.insert(0, "^")
        elif op is _sre_c.LITERAL:
            parts.append(_cp_escape(av))
        elif op is _sre_c.RANGE:
            parts.append(f"{_cp_escape(av[0])}-{_cp_escape(av[1])}")
        elif op is _sre_c.CATEGORY:
            parts.append(_CATEGORY_SRC[av])
        else:  # pragma: no cover - the parser makes nothing else inside a class
            raise ValueError(f"unexpected class item {op}")
    return "[" + "".join(parts) + "]"


def _case_sensitive_items(items, ascii_only: bool) -> Ranges:
    negate = False
    out: list[tuple[int, int]] = []
    for op, av in items:
        if op is _sre_c.NEGATE:
            negate = True
        elif op is _sre_c.LITERAL:
            out.append((av, av))
        elif op is _sre_c.RANGE:
            out.append((av[0], av[1]))
        elif op is _sre_c.CATEGORY:
            out.extend(category_ranges(av, ascii_only))
        else:  # pragma: no cover
            raise ValueError(f"unexpected class item {op}")
    ranges = clean(out)
    return complement(ranges) if negate else ranges


def _ignorecase(case_sensitive: Ranges, source: str, ascii_only: bool) -> Ranges:
    universe, _ = _case_universe()
    flags = re.IGNORECASE | (re.ASCII if ascii_only else 0)
    inside = _ask_re_in_universe(source, flags)
    outside = subtract_ranges(case_sensitive, universe)
    return clean(outside + inside)


@lru_cache(maxsize=4096)
def literal_ranges(c: int, ignorecase: bool, ascii_only: bool) -> Ranges:
    """The characters an sre LITERAL ``c`` matches."""
    if not ignorecase:
        return clean(((c, c),))
    return _ignorecase(clean(((c, c),)), _cp_escape(c), ascii_only)


@lru_cache(maxsize=4096)
def in_ranges(items: tuple, ignorecase: bool, ascii_only: bool) -> Ranges:
    """The characters an sre IN set (a tuple of ``(op, av)`` items) matches."""
    cs = _case_sensitive_items(items, ascii_only)
    if not ignorecase:
        return cs
    return _ignorecase(cs, _items_source(items), ascii_only)


@lru_cache(maxsize=1024)
def backref_char_ranges(c: int, ignorecase: bool, ascii_only: bool) -> Ranges:
    """The characters a backreference accepts where its group captured ``c``."""
    if not ignorecase:
        return clean(((c, c),))
    universe, text = _case_universe()
    flags = re.IGNORECASE | re.DOTALL | (re.ASCII if ascii_only else 0)
    rx = re.compile(r"(.)\1", flags)
    ch = chr(c)
    hits = [(ord(u), ord(u)) for u in text if rx.fullmatch(ch + u)]
    if not any(lo <= c <= hi for lo, hi in universe):
        hits.append((c, c))
    return clean(hits)


def any_ranges(dotall: bool) -> Ranges:
    return ALL_CHARS if dotall else complement(NEWLINE)
