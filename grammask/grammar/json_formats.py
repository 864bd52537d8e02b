"""String formats as languages of decoded text.

Each language is a subset of what the ``jsonschema`` package's ``FormatChecker`` accepts for
that format (with its optional checkers installed: rfc3339-validator, rfc3986-validator, fqdn,
isoduration), so a generated string always passes format validation. Where the checker is
looser than the usual spelling (lowercase ``t``/``z`` in date-times, bracketed UUIDs...), only
the usual spelling is produced. The subsets, format by format:

- ``date``: ``YYYY-MM-DD``, year 0001-9999, day within the month, Feb 29 on leap years only.
- ``time``: ``HH:MM:SS`` with optional fraction, then ``Z`` or ``+HH:MM``/``-HH:MM``.
- ``date-time``: a ``date``, ``T``, a ``time``.
- ``duration``: ``P`` with Y/M/D fields in order and an optional ``T`` part with H/M/S
  (integers), at least one field; or ``PnW`` alone.
- ``email``: ``local@domain`` with a dot-atom local part and hostname-style domain.
- ``hostname``: LDH labels (no leading/trailing hyphen), either up to 3 labels of up to 63
  characters or up to 8 labels of up to 30 characters (total always under 253).
- ``ipv4``: dotted quad, no leading zeros. ``ipv6``: the eight-group form and all ``::``
  compressions (hex groups of 1-4 digits), no zone id, no embedded IPv4.
- ``uuid``: 8-4-4-4-12 hex digits.
- ``uri``: ``scheme:`` then ``//authority`` with an optional path, or a path; then optional
  query and fragment, over unreserved characters, percent escapes and sub-delimiters.
- ``uri-reference``: a ``uri`` or a relative reference (path, query, fragment).
"""

from __future__ import annotations

from .ir import Expr, alt, char_ranges, chars, lit, opt, plus, rep, seq, star

SUPPORTED_FORMATS = (
    "date",
    "time",
    "date-time",
    "duration",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "uuid",
    "uri",
    "uri-reference",
)

# Formats that jsonschema's FormatChecker validates but that have no language here: refused
# (or dropped with a warning when lenient). Any other format name is an annotation the
# validator ignores, and so is ignored here too.
CHECKED_ELSEWHERE = (
    "idn-email",
    "idn-hostname",
    "iri",
    "iri-reference",
    "json-pointer",
    "relative-json-pointer",
    "uri-template",
    "regex",
    "color",
    "ip-address",
    "host-name",
)

_D = chars("0-9")


def _set(members: str) -> Expr:
    """Exactly these characters (no range syntax)."""
    return char_ranges([(ord(c), ord(c)) for c in members])


def _alnum_and(members: str) -> Expr:
    return alt(chars("a-zA-Z0-9"), _set(members))

_HEX = chars("0-9a-fA-F")


def _d(n: int) -> Expr:
    return rep(_D, n, n)


def _date() -> Expr:
    year = alt(seq(chars("1-9"), _d(3)), seq(lit("0"), chars("1-9"), _d(2)), seq(lit("00"), chars("1-9"), _D), seq(lit("000"), chars("1-9")))
    d28 = alt(seq(lit("0"), chars("1-9")), seq(lit("1"), _D), seq(lit("2"), chars("0-8")))
    d30 = alt(d28, lit("29"), lit("30"))
    d31 = alt(d30, lit("31"))
    m31 = alt(*(lit(m) for m in ("01", "03", "05", "07", "08", "10", "12")))
    m30 = alt(*(lit(m) for m in ("04", "06", "09", "11")))
    # leap years: divisible by 4, and not by 100 unless by 400 (two-digit multiples of 4
    # other than 00, as the last two digits or as the century of a year ending in 00)
    by4 = alt(seq(lit("0"), chars("48")), seq(chars("2468"), chars("048")), seq(chars("13579"), chars("26")))
    leap = alt(seq(_D, _D, by4), seq(by4, lit("00")))
    return alt(
        seq(year, lit("-"), m31, lit("-"), d31),
        seq(year, lit("-"), m30, lit("-"), d30),
        seq(year, lit("-02-"), d28),
        seq(leap, lit("-02-29")),
    )


def _time() -> Expr:
    hour = alt(seq(chars("01"), _D), seq(lit("2"), chars("0-3")))
    minute = seq(chars("0-5"), _D)
    offset = alt(lit("Z"), seq(_set("+-"), hour, lit(":"), minute))
    return seq(hour, lit(":"), minute, lit(":"), minute, opt(seq(lit("."), plus(_D))), offset)


def _duration() -> Expr:
    n = plus(_D)

    def field(c: str) -> Expr:
        return seq(n, lit(c))

    # date part: nonempty ordered subset of Y M W D; time part: T + nonempty subset of H M S
    date_fields = [field(c) for c in "YMD"]
    time_fields = [field(c) for c in "HMS"]

    def nonempty_ordered(fields: list[Expr]) -> Expr:
        # at least one field, in order: first present field, then optional later ones
        options = []
        for i, f in enumerate(fields):
            options.append(seq(f, *(opt(g) for g in fields[i + 1 :])))
        return alt(options)

    time_part = seq(lit("T"), nonempty_ordered(time_fields))
    weeks = field("W")  # weeks stand alone (ISO 8601; the checker refuses mixing)
    return seq(lit("P"), alt(seq(nonempty_ordered(date_fields), opt(time_part)), time_part, weeks))


def _label(max_len: int) -> Expr:
    alnum = chars("a-zA-Z0-9")
    return seq(alnum, opt(seq(rep(_alnum_and("-"), 0, max_len - 2), alnum)))


def _hostname() -> Expr:
    long_labels = seq(rep(seq(_label(63), lit(".")), 0, 2), _label(63))
    short_labels = seq(rep(seq(_label(30), lit(".")), 0, 7), _label(30))
    return alt(long_labels, short_labels)


def _email() -> Expr:
    atom = plus(_alnum_and("!#$%&'*+/=?^_`{|}~-"))
    return seq(atom, star(seq(lit("."), atom)), lit("@"), _hostname())


def _ipv4() -> Expr:
    octet = alt(seq(lit("25"), chars("0-5")), seq(lit("2"), chars("0-4"), _D), seq(lit("1"), _D, _D), seq(chars("1-9"), _D), _D)
    return seq(octet, rep(seq(lit("."), octet), 3, 3))


def _ipv6() -> Expr:
    h = rep(_HEX, 1, 4)

    def groups(k: int) -> Expr:  # exactly k groups joined by ':'
        if k == 0:
            from .ir import EMPTY

            return EMPTY
        return seq(h, rep(seq(lit(":"), h), k - 1, k - 1))

    forms = [groups(8)]
    # '::' replaces one or more zero groups: a groups before, b after, a + b <= 7
    for a in range(8):
        for b in range(8 - a):
            forms.append(seq(groups(a), lit("::"), groups(b)))
    return alt(forms)


def _uuid() -> Expr:
    return seq(rep(_HEX, 8, 8), lit("-"), rep(_HEX, 4, 4), lit("-"), rep(_HEX, 4, 4), lit("-"), rep(_HEX, 4, 4), lit("-"), rep(_HEX, 12, 12))


_UNRESERVED = "-._~"
_SUB_DELIMS = "!$&'()*+,;="


def _pchar(extra: str = ":@") -> Expr:
    pct = seq(lit("%"), _HEX, _HEX)
    return alt(_alnum_and(_UNRESERVED + _SUB_DELIMS + extra), pct)


def _uri_tail() -> Expr:
    qf = star(alt(_pchar(), _set("/?")))
    return seq(opt(seq(lit("?"), qf)), opt(seq(lit("#"), qf)))


def _authority() -> Expr:
    reg_name = star(alt(_alnum_and(_UNRESERVED + _SUB_DELIMS), seq(lit("%"), _HEX, _HEX)))
    userinfo = seq(star(alt(_alnum_and(_UNRESERVED + _SUB_DELIMS + ":"), seq(lit("%"), _HEX, _HEX))), lit("@"))
    return seq(opt(userinfo), reg_name, opt(seq(lit(":"), star(_D))))


def _uri() -> Expr:
    scheme = seq(chars("a-zA-Z"), star(_alnum_and("+-.")))
    segment = star(_pchar())
    segment_nz = plus(_pchar())
    hier = alt(
        seq(lit("//"), _authority(), star(seq(lit("/"), segment))),
        seq(lit("/"), opt(seq(segment_nz, star(seq(lit("/"), segment))))),
        seq(segment_nz, star(seq(lit("/"), segment))),
    )
    return seq(scheme, lit(":"), opt(hier), _uri_tail())


def _uri_reference() -> Expr:
    segment = star(_pchar())
    segment_nz_nc = plus(_pchar("@"))  # first segment of a relative path: no colon
    rel = alt(
        seq(lit("//"), _authority(), star(seq(lit("/"), segment))),
        seq(lit("/"), opt(seq(plus(_pchar()), star(seq(lit("/"), segment))))),
        seq(segment_nz_nc, star(seq(lit("/"), segment))),
    )
    return alt(_uri(), seq(opt(rel), _uri_tail()))


_BUILDERS = {
    "date": _date,
    "time": _time,
    "date-time": lambda: seq(_date(), lit("T"), _time()),
    "duration": _duration,
    "email": _email,
    "hostname": _hostname,
    "ipv4": _ipv4,
    "ipv6": _ipv6,
    "uuid": _uuid,
    "uri": _uri,
    "uri-reference": _uri_reference,
}

_CACHE: dict[str, Expr] = {}


def format_expr(name: str) -> Expr | None:
    """The decoded-text language of a supported format, or None when unsupported."""
    if name not in _BUILDERS:
        return None
    if name not in _CACHE:
        _CACHE[name] = _BUILDERS[name]()
    return _CACHE[name]
