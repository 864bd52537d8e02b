"""Exact numeric languages for JSON Schema: integer and decimal ranges, multiples of k.

Every function returns an IR expression over the text of a JSON number. The constructions are
the classic ones over decimal digits: a range ``[a, b]`` of naturals splits by digit count and
then by common prefix (linear in the number of digits, never an unrolling of the range), a
fractional bound compares digit by digit, and "multiple of k" is the k-state remainder
automaton read most-significant digit first.

Instances are compared the way the ``jsonschema`` validator compares them after ``json.loads``:
a number written without fraction or exponent is a Python ``int`` and compares exactly; one
with a fraction is a ``float``, rounded to nearest. Bounds on fractional numbers therefore use
a decimal threshold chosen so that every accepted text also passes after rounding (see
:func:`_float_threshold`); the emitted set may miss texts within one float ulp of a bound, it
never contains a text the validator rejects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from .ir import EMPTY, NOTHING, Automaton, Expr, alt, char_ranges, lit, opt, plus, rep, seq, star

DIGIT = char_ranges([(0x30, 0x39)])
NONZERO = char_ranges([(0x31, 0x39)])
FRACTION = seq(lit("."), plus(DIGIT))
EXPONENT = seq(char_ranges([(0x45, 0x45), (0x65, 0x65)]), opt(char_ranges([(0x2B, 0x2B), (0x2D, 0x2D)])), plus(DIGIT))
NATURAL = alt(lit("0"), seq(NONZERO, star(DIGIT)))
INTEGER = alt(lit("0"), seq(opt(lit("-")), NONZERO, star(DIGIT)))
NUMBER = seq(opt(lit("-")), NATURAL, opt(FRACTION), opt(EXPONENT))

# Largest modulus for which a remainder automaton is built (states = modulus).
MAX_MODULUS = 100_000


def _digits(lo: int, hi: int) -> Expr:
    return char_ranges([(0x30 + lo, 0x30 + hi)]) if lo <= hi else NOTHING


def _same_length(x: str, y: str) -> Expr:
    """Digit strings of len(x) == len(y) between x and y inclusive (leading zeros allowed)."""
    if not x:
        return EMPTY
    if x == y:
        return lit(x)
    n = len(x)
    if x == "0" * n and y == "9" * n:
        return rep(DIGIT, n, n)
    a, b = int(x[0]), int(y[0])
    if a == b:
        return seq(lit(x[0]), _same_length(x[1:], y[1:]))
    rest = n - 1
    parts = [seq(lit(x[0]), _same_length(x[1:], "9" * rest))]
    if a + 1 <= b - 1:
        parts.append(seq(_digits(a + 1, b - 1), rep(DIGIT, rest, rest)))
    parts.append(seq(lit(y[0]), _same_length("0" * rest, y[1:])))
    return alt(parts)


def natural_range(lo: int, hi: int | None) -> Expr:
    """Canonical decimal naturals (no leading zeros) with value in [lo, hi]; hi=None: no top."""
    lo = max(lo, 0)
    if hi is not None and hi < lo:
        return NOTHING
    parts = []
    if lo == 0:
        parts.append(lit("0"))
        lo = 1
        if hi is not None and hi < 1:
            return alt(parts)
    len_lo = len(str(lo))
    len_hi = len(str(hi)) if hi is not None else None
    top = len_hi if len_hi is not None else len_lo
    for n in range(len_lo, top + 1):
        a = max(lo, 10 ** (n - 1))
        b = min(hi, 10**n - 1) if hi is not None else 10**n - 1
        if a <= b:
            parts.append(_same_length(str(a), str(b)))
    if hi is None:
        parts.append(seq(NONZERO, rep(DIGIT, len_lo, None)))
    return alt(parts)


def integer_range(lo: int | None, hi: int | None) -> Expr:
    """Canonical JSON integers (``0`` or ``-?[1-9][0-9]*``) with value in [lo, hi]."""
    if lo is not None and hi is not None and lo > hi:
        return NOTHING
    parts = []
    if hi is None or hi >= 0:
        parts.append(natural_range(max(lo, 0) if lo is not None else 0, hi))
    if lo is None or lo < 0:
        mag_lo = 1 if hi is None or hi >= 0 else -hi
        mag_hi = None if lo is None else -lo
        parts.append(seq(lit("-"), natural_range(mag_lo, mag_hi)))
    return alt(parts)


# --------------------------------------------------------------------------- fractions


@dataclass(frozen=True)
class _FracBound:
    """Constraint ``0.D >= 0.f`` (lower) or ``0.D <= 0.f`` (upper), strict or not; ``f`` has
    no trailing zeros."""

    f: str
    strict: bool


def _fraction_digits(lo: _FracBound | None, hi: _FracBound | None, need: bool, memo: dict) -> Expr:
    """Digit strings D (nonempty when ``need``) with 0.D within the bounds."""
    key = (lo, hi, need)
    if key in memo:
        return memo[key]
    if lo is not None and lo.f == "" and not lo.strict:
        lo = None
    if hi is not None and hi.f == "" and hi.strict:
        memo[key] = NOTHING
        return NOTHING
    zeros_only = hi is not None and hi.f == ""  # 0.D <= 0: D is all zeros
    needs_nonzero = lo is not None and lo.f == ""  # 0.D > 0: D has a nonzero digit
    out = None
    if lo is None and hi is None:
        out = plus(DIGIT) if need else star(DIGIT)
    elif zeros_only and needs_nonzero:
        out = NOTHING
    elif zeros_only and lo is None:
        out = rep(lit("0"), 1 if need else 0, None)
    elif needs_nonzero and hi is None:
        out = seq(star(lit("0")), NONZERO, star(DIGIT))
    if out is not None:
        memo[key] = out
        return out
    # Can D stop here? Then 0.D equals 0.(digits so far): lo needs f == "" and not strict
    # (normalized to None above); hi is met when f != "" or not strict.
    parts = []
    if not need and lo is None:
        parts.append(EMPTY)
    groups: dict[tuple, list[int]] = {}
    for c in range(10):
        nlo = lo
        if lo is not None:
            if lo.f == "":
                nlo = None if c > 0 else lo
            else:
                d = int(lo.f[0])
                if c < d:
                    continue
                nlo = None if c > d else _FracBound(lo.f[1:], lo.strict)
        nhi = hi
        if hi is not None:
            if hi.f == "":
                if c != 0:
                    continue
            else:
                d = int(hi.f[0])
                if c > d:
                    continue
                nhi = None if c < d else _FracBound(hi.f[1:], hi.strict)
        groups.setdefault((nlo, nhi), []).append(c)
    for (nlo, nhi), cs in groups.items():
        parts.append(seq(char_ranges([(0x30 + c, 0x30 + c) for c in cs]), _fraction_digits(nlo, nhi, False, memo)))
    out = alt(parts)
    memo[key] = out
    return out


def _split(t: Decimal) -> tuple[int, str]:
    """Non-negative decimal -> (integer part, fraction digits without trailing zeros)."""
    sign, digits, exp = t.as_tuple()
    assert not sign
    s = "".join(map(str, digits))
    if exp >= 0:
        return int(s + "0" * exp), ""
    point = len(s) + exp
    ip = s[:point] if point > 0 else "0"
    fp = ("0" * (-point) + s) if point < 0 else s[point:]
    return int(ip), fp.rstrip("0")


@dataclass(frozen=True)
class Bound:
    """A decimal bound on a magnitude: value, strict?"""

    value: Decimal
    strict: bool


def _magnitude_fractional(lo: Bound | None, hi: Bound | None) -> Expr:
    """Unsigned texts ``(0|[1-9][0-9]*)\\.[0-9]+`` with value within the bounds."""
    memo: dict = {}
    if lo is not None and lo.value < 0:
        lo = None
    if hi is not None and (hi.value < 0 or (hi.value == 0 and hi.strict)):
        return NOTHING
    li, lf = _split(lo.value) if lo is not None else (0, "")
    flo = _FracBound(lf, lo.strict) if lo is not None else None
    if hi is None:
        return alt(
            seq(lit(str(li)), lit("."), _fraction_digits(flo, None, True, memo)),
            seq(natural_range(li + 1, None), FRACTION),
        )
    hi_i, hf = _split(hi.value)
    fhi = _FracBound(hf, hi.strict)
    if li > hi_i:
        return NOTHING
    if li == hi_i:
        return seq(lit(str(li)), lit("."), _fraction_digits(flo, fhi, True, memo))
    return alt(
        seq(lit(str(li)), lit("."), _fraction_digits(flo, None, True, memo)),
        seq(natural_range(li + 1, hi_i - 1), FRACTION),
        seq(lit(str(hi_i)), lit("."), _fraction_digits(None, fhi, True, memo)),
    )


def decimal_fraction_range(lo: Bound | None, hi: Bound | None) -> Expr:
    """JSON numbers with a fraction part and no exponent, ``-?(0|[1-9][0-9]*)\\.[0-9]+``, whose
    exact decimal value lies within the bounds."""
    parts = []
    # non-negative texts
    if hi is None or hi.value > 0 or (hi.value == 0 and not hi.strict):
        parts.append(_magnitude_fractional(lo, hi))
    # negative texts: value -m, so m within [-hi, -lo]
    if lo is None or lo.value < 0 or (lo.value == 0 and not lo.strict):
        mlo = Bound(-hi.value, hi.strict) if hi is not None and hi.value <= 0 else None
        mhi = Bound(-lo.value, lo.strict) if lo is not None else None
        parts.append(seq(lit("-"), _magnitude_fractional(mlo, mhi)))
    return alt(parts)


# --------------------------------------------------------------------------- schema bounds


def _exact(v) -> Fraction:
    return Fraction(v)


def integer_bounds(minimum, maximum, exclusive_min, exclusive_max) -> tuple[int | None, int | None]:
    """Bounds (int/float values from the schema; exclusive_* as values, draft-6 style) ->
    the inclusive integer interval, compared exactly as Python compares int with float."""
    lo = hi = None
    for v, strict in ((minimum, False), (exclusive_min, True)):
        if v is None:
            continue
        if isinstance(v, float) and math.isinf(v):
            if v > 0:
                return 1, 0
            continue
        f = _exact(v)
        n = math.floor(f) + 1 if strict and f.denominator == 1 else math.ceil(f)
        lo = n if lo is None else max(lo, n)
    for v, strict in ((maximum, False), (exclusive_max, True)):
        if v is None:
            continue
        if isinstance(v, float) and math.isinf(v):
            if v < 0:
                return 1, 0
            continue
        f = _exact(v)
        n = math.ceil(f) - 1 if strict and f.denominator == 1 else math.floor(f)
        hi = n if hi is None else min(hi, n)
    return lo, hi


def _float_threshold(v, strict: bool, upward: bool) -> Decimal | None:
    """A decimal t such that every decimal d >= t (upward) / d <= t (downward) rounds to a
    float that satisfies ``float(d) >= v`` (or ``>`` when strict; mirrored downward).

    Rounding to nearest is monotone, so t = repr of the first float on the right side works:
    float(d) is at least float(t) = that float. None: no float qualifies.
    """
    direction = math.inf if upward else -math.inf
    if isinstance(v, float):
        if math.isinf(v):
            return None
        g = v
    else:
        g = float(v)
    exact = Fraction(v)
    # first float g with g >= v (resp. > v when strict), moving upward; mirrored downward
    while True:
        if math.isinf(g):
            return None
        fg = Fraction(g)
        ok = (fg > exact if strict else fg >= exact) if upward else (fg < exact if strict else fg <= exact)
        if ok:
            break
        g = math.nextafter(g, direction)
    return Decimal(repr(g))


# Fraction digits kept in a float-safe threshold. A threshold such as the float just above 0
# (5e-324) would need 324 digits; rounding it away from the valid side keeps the construction
# small and only drops texts closer to the bound than 1e-20.
THRESHOLD_DIGITS = 20


def _quantize(t: Decimal, upward: bool) -> Decimal:
    from decimal import ROUND_CEILING, ROUND_FLOOR, localcontext

    with localcontext() as ctx:
        ctx.prec = 1000
        q = t.quantize(Decimal(1).scaleb(-THRESHOLD_DIGITS), rounding=ROUND_CEILING if upward else ROUND_FLOOR)
    return q.normalize() if q != 0 else Decimal(0)


def number_range(minimum, maximum, exclusive_min, exclusive_max) -> Expr:
    """JSON numbers without exponent whose value (as the validator sees it) is in bounds.

    Integer texts compare exactly; fractional texts are bounded by float-safe thresholds.
    """
    ilo, ihi = integer_bounds(minimum, maximum, exclusive_min, exclusive_max)
    ints = integer_range(ilo, ihi)
    lo = hi = None
    for v, strict in ((minimum, False), (exclusive_min, True)):
        if v is None:
            continue
        if isinstance(v, float) and math.isinf(v):
            if v > 0:
                return NOTHING
            continue
        t = _float_threshold(v, strict, upward=True)
        if t is None:
            return ints
        t = _quantize(t, upward=True)
        if lo is None or t > lo.value:
            lo = Bound(t, False)
    for v, strict in ((maximum, False), (exclusive_max, True)):
        if v is None:
            continue
        if isinstance(v, float) and math.isinf(v):
            if v < 0:
                return NOTHING
            continue
        t = _float_threshold(v, strict, upward=False)
        if t is None:
            return ints
        t = _quantize(t, upward=False)
        if hi is None or t < hi.value:
            hi = Bound(t, False)
    if lo is not None and hi is not None and lo.value > hi.value:
        return ints
    return alt(ints, decimal_fraction_range(lo, hi))


def nonnegative_number(strict: bool) -> Expr:
    """Numbers >= 0 (with exponents allowed: a non-negative mantissa stays >= 0 after any
    scaling or rounding). ``strict`` (> 0) is not exact with exponents (1e-400 rounds to 0), so
    it is not offered here."""
    assert not strict
    return seq(NATURAL, opt(FRACTION), opt(EXPONENT))


# --------------------------------------------------------------------------- multiples


def multiple_automaton(k: int) -> Automaton:
    """Canonical JSON integers (``0`` or ``-?[1-9][0-9]*``) divisible by ``k`` (k >= 1)."""
    if k < 1:
        raise ValueError("modulus must be positive")
    if k > MAX_MODULUS:
        raise ValueError(f"modulus {k} is larger than {MAX_MODULUS}")
    # states: 0 start, 1 after '-', 2 the text "0", 3 + r remainder r after a nonzero lead
    base = 3
    edges: list[list[tuple[int, int, int]]] = [[] for _ in range(base + k)]
    edges[0].append((0x2D, 0x2D, 1))
    edges[0].append((0x30, 0x30, 2))
    for d in range(1, 10):
        edges[0].append((0x30 + d, 0x30 + d, base + d % k))
        edges[1].append((0x30 + d, 0x30 + d, base + d % k))
    for r in range(k):
        for d in range(10):
            edges[base + r].append((0x30 + d, 0x30 + d, base + (r * 10 + d) % k))
    accepting = [False, False, True] + [r == 0 for r in range(k)]
    return Automaton(0, _merged_edges(edges), tuple(accepting), label=f"multiple of {k}")


def _merged_edges(edges: list[list[tuple[int, int, int]]]) -> tuple:
    """Each state's edges sorted, adjacent byte ranges to one target merged."""
    merged = []
    for out in edges:
        out.sort()
        m: list[tuple[int, int, int]] = []
        for lo, hi, dst in out:
            if m and m[-1][2] == dst and m[-1][1] + 1 == lo:
                m[-1] = (m[-1][0], hi, dst)
            else:
                m.append((lo, hi, dst))
        merged.append(tuple(m))
    return tuple(merged)


def decimal_multiple_automaton(k: int, a: int) -> Automaton:
    """JSON numbers without exponent (integer part ``0`` or ``[1-9][0-9]*``, optional ``-``,
    optional fraction) whose value times ``10**a`` is an integer divisible by ``k``: at most
    ``a`` fraction digits that are not trailing zeros, and the digits, with the fraction padded
    to ``a`` digits, read as an integer divisible by ``k`` (k >= 1, a >= 1). ``-0`` appears
    only with a fraction."""
    if k < 1 or a < 1:
        raise ValueError("modulus and fraction digits must be positive")
    if k * (a + 3) > MAX_MODULUS:
        raise ValueError(f"modulus {k} with {a} fraction digits is too large")
    # states: 0 start, 1 after '-', 2 "0", 3 "-0"; then per residue r: integer part I(r),
    # just after the point D(r), after m fraction digits F(r, m) (1 <= m <= a), zeros only
    # beyond the a-th fraction digit T(r)
    def i_(r):
        return 4 + r

    def d_(r):
        return 4 + k + r

    def f_(r, m):
        return 4 + 2 * k + (m - 1) * k + r

    def t_(r):
        return 4 + (2 + a) * k + r

    n = 4 + (3 + a) * k
    edges: list[list[tuple[int, int, int]]] = [[] for _ in range(n)]
    accepting = [False] * n
    zero, dot, minus = 0x30, 0x2E, 0x2D
    edges[0] += [(minus, minus, 1), (zero, zero, 2)]
    edges[1].append((zero, zero, 3))
    for dgt in range(1, 10):
        edges[0].append((zero + dgt, zero + dgt, i_(dgt % k)))
        edges[1].append((zero + dgt, zero + dgt, i_(dgt % k)))
    edges[2].append((dot, dot, d_(0)))
    edges[3].append((dot, dot, d_(0)))
    accepting[2] = True
    for r in range(k):
        for dgt in range(10):
            edges[i_(r)].append((zero + dgt, zero + dgt, i_((r * 10 + dgt) % k)))
            edges[d_(r)].append((zero + dgt, zero + dgt, f_((r * 10 + dgt) % k, 1)))
            for m in range(1, a):
                edges[f_(r, m)].append((zero + dgt, zero + dgt, f_((r * 10 + dgt) % k, m + 1)))
        edges[i_(r)].append((dot, dot, d_(r)))
        edges[f_(r, a)].append((zero, zero, t_(r)))
        edges[t_(r)].append((zero, zero, t_(r)))
        accepting[i_(r)] = r * 10 ** a % k == 0
        for m in range(1, a + 1):
            accepting[f_(r, m)] = r * 10 ** (a - m) % k == 0
        accepting[t_(r)] = r == 0
    return Automaton(0, _merged_edges(edges), tuple(accepting), label=f"multiple of {k}/10^{a}")


def float_multiple_as_decimal_step(f: float) -> tuple[int, int, int] | None:
    """For a float ``multipleOf`` f written as the decimal p/q (lowest terms): its multiples
    that are exact in binary are the multiples of p/2**a, a the power of
    two in q, and each of them x with |x| < limit passes the validator's test
    ``int(x / f) == x / f`` (x is exact, x/f rounds to its integer quotient by the criterion of
    :func:`float_multiple_as_integer_divisor`). Returns (k, a, limit) such that these x are the
    decimals with x * 10**a an integer divisible by k = p * 5**a; None when a = 0, when there
    is no guarantee, or when that automaton would be too large."""
    got = float_multiple_as_integer_divisor(f)
    if got is None:
        return None
    written = Fraction(Decimal(repr(f)))
    p, q = written.numerator, written.denominator
    a = (q & -q).bit_length() - 1
    if a == 0:
        return None
    # x * 2**a = i * p must stay below 2**53 (x exact), x / f = i * (q >> a) too; f exact in
    # binary (0.25): x / f = i exactly
    limit = ((1 << 53) - 1) >> a
    if got[1] is not None:
        limit = min(limit, got[1])
    k = p * 5 ** a
    if k * (a + 3) > MAX_MODULUS:  # decimal_multiple_automaton's size limit
        return None
    return k, a, limit


def float_multiple_as_integer_divisor(f: float) -> tuple[int, int | None] | None:
    """For a float ``multipleOf`` f, an integer p and magnitude limit such that every integer n
    divisible by p (|n| <= limit, None: no limit) passes the validator's float test
    ``int(n / f) == n / f``. None when no such guarantee is available.

    f exact in binary (2.5, 0.25) divides exactly: unlimited. Otherwise f is taken as the decimal
    it was written as (p/q); the rounding error of float(f) must be under a eighth of an ulp so the
    quotient of an exact multiple rounds to the integer, and the magnitudes stay below 2**53.
    """
    if not math.isfinite(f) or f <= 0:
        return None
    exact = Fraction(f)
    written = Fraction(Decimal(repr(f)))
    if exact == written:  # the decimal as written is exact in binary: division is exact
        return exact.numerator, None
    rel = abs(exact - written) / written
    if rel >= Fraction(1, 2**55):
        return None
    p = written.numerator
    # n = p*j, quotient n/f = q*j; both must stay below 2**53
    limit = min(2**53 - 1, (2**53 - 1) * p // written.denominator)
    return p, limit
