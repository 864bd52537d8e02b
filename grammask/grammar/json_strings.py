"""JSON string contents: characters, escapes, and the encoding of a decoded-text language.

Two views of a string constraint meet here. Length limits count decoded characters (code
points, as Python's ``len`` after ``json.loads``): :func:`json_char` is one decoded character
in any of its JSON spellings (raw, a short escape, ``\\uXXXX``, or a surrogate pair for a
character beyond the BMP), so ``Repeat(json_char, m, n)`` is exact. Lone surrogate escapes
(``\\ud800`` alone) are not characters here: ``json.loads`` would accept them, but the result
is not valid Unicode text and cannot be encoded back to UTF-8. Only a schema that names such a
string (a ``const``, an ``enum`` value, a property name) gets that escape, from
:func:`encode_text`, as the one spelling of that exact string.

Patterns and formats describe the decoded text. :func:`encode_text_expr` maps such a language
to JSON string contents in one canonical spelling: the characters JSON requires escaped
(``"``, ``\\`` and U+0000..U+001F) use the escape ``json.dumps`` writes, every other character
appears raw. Each decoded string then has exactly one accepted spelling, the one
``json.dumps(s, ensure_ascii=False)`` produces. That is a subset of the JSON texts with that
decoded value, never a superset.
"""

from __future__ import annotations

import functools
import json
import re
import threading

import numpy as np

from ..errors import GrammarError, SchemaError
from .ir import (
    EMPTY,
    NOTHING,
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
    alt,
    byte_ranges,
    char_ranges,
    chars,
    intern_node,
    intersect_ranges,
    lit,
    rep,
    seq,
    star,
    subtract_ranges,
)

# Characters that JSON requires escaped inside a string.
SPECIAL_RANGES = ((0x00, 0x1F), (0x22, 0x22), (0x5C, 0x5C))
_HEX = chars("0-9a-fA-F")


def canonical_escape(c: int) -> str:
    """The spelling ``json.dumps(..., ensure_ascii=False)`` uses for character ``c``."""
    if c < 0x80:
        return _ASCII_SPELLING[c]
    return json.dumps(chr(c), ensure_ascii=False)[1:-1]


_ASCII_SPELLING = [json.dumps(chr(c), ensure_ascii=False)[1:-1] for c in range(0x80)]
_ESCAPE_LITS = {c: Literal(_ASCII_SPELLING[c].encode()) for c in list(range(0x20)) + [0x22, 0x5C]}


#: encode_text's answers (property names and enum strings come back in every rule that names
#: them: the key literal, the excluded keys of the extra properties...)
_ENCODED: dict[str, bytes] = {}


def encode_text(text: str) -> bytes:
    """Canonical JSON string contents (without quotes) for ``text``.

    A lone surrogate (``"\\ud800"`` in a schema's JSON text decodes to one) has no UTF-8
    form: it is spelled as the escape that decodes to it again. A high surrogate followed by
    a low one, as two characters of a Python string, is refused: JSON text spells that pair
    as one character, so no spelling decodes to the given string."""
    data = _ENCODED.get(text)
    if data is not None:
        return data
    try:
        data = json.dumps(text, ensure_ascii=False)[1:-1].encode("utf-8")
    except UnicodeEncodeError:
        pass
    else:
        if len(_ENCODED) >= 4096:
            _ENCODED.clear()
        _ENCODED[text] = data
        return data
    if _SURROGATE_PAIR.search(text):
        raise SchemaError(f"the string {text!r} holds a surrogate pair as two characters, "
                          "which no JSON text decodes to", None)
    return json.dumps(text, ensure_ascii=False)[1:-1].encode("utf-8", "backslashreplace")


_SURROGATE_PAIR = re.compile("[\ud800-\udbff][\udc00-\udfff]")


@functools.lru_cache(maxsize=1)
def json_char() -> Expr:
    """One decoded character, in any JSON spelling (lone surrogates excluded). One node for
    the process (the IR is immutable)."""
    raw = char_ranges(subtract_ranges(((0x20, 0x10FFFF),), ((0x22, 0x22), (0x5C, 0x5C))))
    short = seq(lit("\\"), chars('"\\\\/bfnrt'))
    # \uXXXX for a BMP scalar value: first hex digit not D, or D followed by 0-7
    not_d = chars("0-9a-cA-CeEfF")
    bmp = seq(lit("\\u"), alt(seq(not_d, rep(_HEX, 3, 3)), seq(chars("dD"), chars("0-7"), rep(_HEX, 2, 2))))
    high = seq(lit("\\u"), chars("dD"), chars("89abAB"), rep(_HEX, 2, 2))
    low = seq(lit("\\u"), chars("dD"), chars("c-fC-F"), rep(_HEX, 2, 2))
    return alt(raw, short, bmp, seq(high, low))


# --------------------------------------------------------------------------- encoding


@functools.lru_cache(maxsize=4096)
def _encode_charset(ranges) -> Expr:
    plain = subtract_ranges(ranges, SPECIAL_RANGES)
    parts = [CharSet(plain)] if plain else []
    escapes = _escapes(intersect_ranges(ranges, SPECIAL_RANGES))
    if escapes is not None:
        parts.append(escapes)
    if not parts:
        return NOTHING
    return parts[0] if len(parts) == 1 else intern_node(Alt(tuple(parts)))


@functools.lru_cache(maxsize=256)
def _escapes(ranges) -> Expr | None:
    """The escape spellings of the special characters in ``ranges``, as one node: a character
    set that excludes a few characters (the complement at a node of a key trie) has all 34,
    and the same node for all of them lets the automaton builder treat it as one cached
    fragment."""
    lits = [_ESCAPE_LITS[c] for lo, hi in ranges for c in range(lo, hi + 1)]
    if not lits:
        return None
    return lits[0] if len(lits) == 1 else intern_node(Alt(tuple(lits)))


def _encode_byteset(ranges) -> Expr:
    # ASCII bytes are characters; bytes >= 0x80 are parts of multibyte sequences, never special.
    ascii_part = intersect_ranges(ranges, ((0, 0x7F),))
    high = intersect_ranges(ranges, ((0x80, 0xFF),))
    parts = [_encode_charset(ascii_part)] if ascii_part else []
    if high:
        parts.append(byte_ranges(high))
    return alt(parts)


def _encode_literal(data: bytes) -> Expr:
    out = bytearray()
    for b in data:
        if b < 0x20 or b in (0x22, 0x5C):
            out += canonical_escape(b).encode()
        else:
            out.append(b)
    return lit(bytes(out))


_SPECIALS = tuple(c for lo, hi in SPECIAL_RANGES for c in range(lo, hi + 1))


@functools.lru_cache(maxsize=1024)
def _escape_template(pattern: tuple[int, ...]) -> tuple[int, tuple[tuple[int, int, bool, int], ...]]:
    """The escape trie of one state whose special character ``_SPECIALS[i]`` leads to exit
    ``pattern[i]`` (-1: no edge): (inner states, edges ``(src, byte, to_exit, target)``),
    src 0 the state itself and 1.. the inner states; target an inner state or an exit."""
    trie: dict = {}
    for c, exit_ in zip(_SPECIALS, pattern):
        if exit_ < 0:
            continue
        node = trie
        esc = canonical_escape(c).encode()
        for b in esc[:-1]:
            node = node.setdefault(b, {})
        node[esc[-1]] = exit_  # escapes are prefix-free
    edges: list[tuple[int, int, bool, int]] = []
    count = [0]

    def emit(src: int, node: dict) -> None:
        for b in sorted(node):
            child = node[b]
            if isinstance(child, dict):
                count[0] += 1
                t = count[0]
                edges.append((src, b, False, t))
                emit(t, child)
            else:
                edges.append((src, b, True, child))

    emit(0, trie)
    return count[0], tuple(edges)


def encode_automaton(a: Automaton) -> Automaton:
    """Rewrite a byte DFA over UTF-8 decoded text into one over canonical JSON contents.

    Special characters are single ASCII bytes (never UTF-8 continuation bytes), so each edge
    on a special byte becomes a chain spelling its escape. All escapes start with a backslash;
    the chains of one state are merged into a trie so the result stays deterministic (one
    cached trie shape per pattern of targets). Results are kept by value (patterns and formats
    recur across schemas).
    """
    key = (a.start, a.edges, a.accepting, a.label)  # the label names it in reprs
    with _encoded_lock:
        hit = _encoded.get(key)
    if hit is not None:
        return hit
    accepting = list(a.accepting)
    edges: list[list[tuple[int, int, int]]] = [[] for _ in range(len(a.edges))]
    for s, out in enumerate(a.edges):
        special: dict[int, int] = {}
        mine = edges[s]
        for lo, hi, dst in out:
            if lo >= 0x20 and not lo <= 0x22 <= hi and not lo <= 0x5C <= hi:
                mine.append((lo, hi, dst))  # no special character in the range
                continue
            for plo, phi in subtract_ranges(((lo, hi),), SPECIAL_RANGES):
                mine.append((plo, phi, dst))
            for slo, shi in intersect_ranges(((lo, hi),), SPECIAL_RANGES):
                for c in range(slo, shi + 1):
                    special[c] = dst
        if not special:
            continue
        exits: list[int] = []
        index: dict[int, int] = {}
        pattern = []
        for c in _SPECIALS:
            d = special.get(c)
            if d is None:
                pattern.append(-1)
                continue
            if d not in index:
                index[d] = len(exits)
                exits.append(d)
            pattern.append(index[d])
        n_inner, tpl = _escape_template(tuple(pattern))
        base = len(edges) - 1
        edges.extend([] for _ in range(n_inner))
        accepting.extend([False] * n_inner)
        for src, b, to_exit, t in tpl:
            edges[s if src == 0 else base + src].append(
                (b, b, exits[t] if to_exit else base + t))
    final = tuple(tuple(sorted(out)) for out in edges)
    out = Automaton(a.start, final, tuple(accepting), label=f"json-encoded {a.label}")
    with _encoded_lock:
        if len(_encoded) >= 256:
            _encoded.pop(next(iter(_encoded)))
        _encoded[key] = out
    return out


_encoded: dict[tuple, Automaton] = {}
_encoded_lock = threading.Lock()


def encode_text_expr(expr: Expr, memo: dict | None = None) -> Expr:
    """Map a language of decoded strings to its canonical JSON spellings (without quotes)."""
    if memo is None:
        memo = {}
    key = id(expr)
    if key in memo:
        return memo[key][1]
    if isinstance(expr, (Empty, Nothing)):
        out = expr
    elif isinstance(expr, Literal):
        out = _encode_literal(expr.data)
    elif isinstance(expr, CharSet):
        out = _encode_charset(expr.ranges)
    elif isinstance(expr, ByteSet):
        out = _encode_byteset(expr.ranges)
    elif isinstance(expr, Seq):
        out = seq([encode_text_expr(i, memo) for i in expr.items])
    elif isinstance(expr, Alt):
        out = alt([encode_text_expr(i, memo) for i in expr.items])
    elif isinstance(expr, Repeat):
        out = rep(encode_text_expr(expr.item, memo), expr.min, expr.max)
    elif isinstance(expr, Automaton):
        out = encode_automaton(expr)
    elif isinstance(expr, Ref):
        raise GrammarError("a string language with rule references cannot be JSON-encoded")
    else:
        raise TypeError(f"not an IR expression: {expr!r}")
    memo[key] = (expr, out)
    return out


def quoted(contents: Expr) -> Expr:
    return seq(lit('"'), contents, lit('"'))


__all__ = [
    "EMPTY",
    "canonical_escape",
    "encode_automaton",
    "encode_text",
    "encode_text_expr",
    "json_char",
    "quoted",
]


# --------------------------------------------------------------------------- key complements

_KEY_TAIL: list = []  # _key_tail's answer, built once
_KEY_TAIL_LOCK = threading.Lock()


def _key_tail():
    """The states every key complement ends in: ``json_char*`` (states 0..) and the
    canonical escape spellings of the special characters (after them). Returns (accepting,
    rest start, the edges as int32 (src, lo, hi, dst) rows) and, for the key-complement
    kernel, (int64 state -> its first row, the rows' (lo, hi, dst) columns, the rest's edges
    at a character boundary with the backslash leading to the escape spellings instead, as
    (lo, hi, dst) rows)."""
    with _KEY_TAIL_LOCK:
        if _KEY_TAIL:
            return _KEY_TAIL[0]
        from .fsm import Dfa

        rest = Dfa.from_expr(star(json_char()))
        esc = Dfa.from_expr(_escapes(SPECIAL_RANGES))
        r = rest.start
        finals = [s for s in range(esc.n_states) if esc.accepting[s]]
        # the escapes are prefix-free: one final state, with no edge out
        if len(finals) != 1 or esc.edges[finals[0]] or esc.edges[esc.start][0][:2] != (
                0x5C, 0x5C) or len(esc.edges[esc.start]) != 1:
            raise AssertionError("unexpected shape of the escape spellings' automaton")
        final = finals[0]
        n = rest.n_states
        index = {}
        for s in range(esc.n_states):
            if s != final:
                index[s] = n + len(index)
        index[final] = r
        edges = [tuple(e) for e in rest.edges] + [()] * (len(index) - 1)
        for s, i in index.items():
            if s != final:
                edges[i] = tuple((lo, hi, index[t]) for lo, hi, t in esc.edges[s])
        accepting = list(rest.accepting) + [False] * (len(index) - 1)
        if [s for s in range(n) if accepting[s]] != [r]:
            raise AssertionError("unexpected shape of json_char*'s automaton")
        entry = index[esc.edges[esc.start][0][2]]
        boundary = tuple((lo, hi, entry if lo == 0x5C else t) for lo, hi, t in rest.edges[r])
        if any(lo <= 0x5C <= hi and lo != hi for lo, hi, _ in boundary):
            raise AssertionError("the backslash shares an edge in json_char*'s automaton")
        rows = np.array([(s, lo, hi, t) for s, es in enumerate(edges) for lo, hi, t in es],
                        dtype=np.int32).reshape(-1, 4)
        ptr = np.searchsorted(rows[:, 0], np.arange(len(edges) + 1)).astype(np.int64)
        _KEY_TAIL.append((tuple(accepting), r, rows, ptr, np.ascontiguousarray(rows[:, 1:]),
                          np.array(boundary, dtype=np.int32).reshape(-1, 3)))
        return _KEY_TAIL[0]


def keys_outside(words) -> Automaton | None:
    """JSON string contents whose decoded value is none of ``words``, as one byte automaton:
    canonical spelling (see the module notes) up to the first character that leaves the
    trie of the words, any spelling (``json_char*``) after it. The same language as the
    IR form the JSON Schema converter builds otherwise, without its expression per trie
    node (a trie node is a state here, its other characters a few byte ranges; the states
    are made by a kernel, as rows). None when a word has a character JSON escapes (the IR
    form handles those)."""
    from ..mask_kernels.dfa_kernels import key_complement_rows

    fixed_acc, r, fixed_rows, fx_ptr, fx_rows, bd_rows = _key_tail()
    datas = [encode_text(w) for w in words]
    data = b"".join(datas)
    if b"\\" in data:
        return None
    ends = np.cumsum(np.array([len(d) for d in datas], dtype=np.int64))
    base = len(fixed_acc)
    status, rows, acc = key_complement_rows(np.frombuffer(data, dtype=np.uint8), ends, r,
                                            fx_ptr, fx_rows, bd_rows, base)
    if status < 0:  # not UTF-8 text: encode_text never writes it
        return None
    return RowsAutomaton(base, np.concatenate([fixed_rows, rows]),
                         fixed_acc + tuple(acc.astype(bool).tolist()),
                         label=f"keys other than {len(set(words))}")
