"""Deterministic tests of the regex front-end: the hard cases, checked against Python's ``re``.

Most checks are exhaustive: every string up to some length over a small alphabet that hits
the construct's corner cases is run through both ``re`` and the IR (via fsm's DFA of the IR,
cross-checked by the independent IR matcher of test_regex_support).
"""

from __future__ import annotations

import itertools
import re

import pytest

from grammask.errors import GrammarError
from grammask.grammar import fsm, ir
from grammask.grammar.ir import Grammar
from grammask.grammar.regex import MAX_REPEAT_SIZE, regex_to_expr

from .test_regex_support import ir_matches


def expected(pattern: str, s: str, semantics: str, flags: int = 0) -> bool:
    if semantics == "fullmatch":
        return re.fullmatch(pattern, s, flags) is not None
    if semantics == "search":
        return re.search(pattern, s, flags) is not None
    m = re.match(pattern, s, flags)
    return bool(s) and m is not None and m.end() == len(s)


def strings(alphabet, max_len: int):
    for n in range(max_len + 1):
        for t in itertools.product(alphabet, repeat=n):
            yield "".join(t)


def check_exhaustive(pattern, alphabet, max_len, semantics="fullmatch", flags=0):
    expr = regex_to_expr(pattern, flags, semantics=semantics)
    dfa = fsm.Dfa.from_expr(expr)
    n_true = 0
    for k, s in enumerate(strings(alphabet, max_len)):
        want = expected(pattern, s, semantics, flags)
        data = s.encode("utf-8")
        assert dfa.accepts(data) == want, (pattern, semantics, s, want)
        if k % 7 == 0:
            assert ir_matches(expr, data) == want, (pattern, semantics, s, want)
        n_true += want
    return n_true


# --------------------------------------------------------------------------- Lark's terminals

ESCAPED_STRING = r'".*?(?<!\\)(\\\\)*?"'
C_COMMENT = r"/\*(.|\n)*?\*/"


def test_escaped_string_stops_at_first_unescaped_quote():
    n = check_exhaustive(ESCAPED_STRING, ['"', "\\", "a"], 8, "match")
    assert n > 50
    e = regex_to_expr(ESCAPED_STRING, semantics="match")
    assert ir_matches(e, rb'"a\"b"')
    assert ir_matches(e, rb'"a\\"')
    assert not ir_matches(e, rb'"a\\"b"')
    assert not ir_matches(e, b'"a" "b"')
    # fullmatch semantics, in contrast, happily spans several strings:
    assert ir_matches(regex_to_expr(ESCAPED_STRING), b'"a" "b"')


def test_c_comment_stops_at_first_close():
    check_exhaustive(C_COMMENT, ["/", "*", "a", "\n"], 7, "match")
    e = regex_to_expr(C_COMMENT, semantics="match")
    assert ir_matches(e, b"/* x\n */")
    assert not ir_matches(e, b"/* a */ b */")


@pytest.mark.parametrize("pattern, alphabet, n", [
    (r'".*?"', ['"', "a", "\n"], 7),
    (r"a|ab", ["a", "b"], 4),
    (r"ab|a", ["a", "b"], 4),
    (r"a*?b", ["a", "b"], 5),
    (r"(?:a|ab)(?:c|bcd)", ["a", "b", "c", "d"], 5),
    (r"(?:|a)*", ["a"], 3),         # sre ends a loop on an empty iteration: matches ""
    (r"(?:a|)*b", ["a", "b"], 4),
    (r"(?:a?)+?b", ["a", "b"], 4),
    (r"(a|b)*?c", ["a", "b", "c"], 4),
    (r"(?:a(?=b)|ab?)b*", ["a", "b"], 5),
    (r"(?:a|(?=b))*b", ["a", "b"], 5),
    (r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", ["1", ".", "e", "-"], 6),
])
def test_match_semantics_leftmost_first(pattern, alphabet, n):
    check_exhaustive(pattern, alphabet, n, "match")


def test_lark_common_terminals():
    lark = pytest.importorskip("lark")
    names = ["SIGNED_NUMBER", "ESCAPED_STRING", "C_COMMENT", "CNAME", "WS", "NEWLINE",
             "SH_COMMENT", "CPP_COMMENT", "WS_INLINE", "HEXDIGIT"]
    text = "start: " + " | ".join(names) + "\n" + "\n".join(f"%import common.{n}" for n in names)
    parser = lark.Lark(text, lexer="dynamic_complete")
    alphabet = ['"', "\\", "a", "1", ".", "e", "-", "/", "*", "\n", " ", "#"]
    samples = list(strings(alphabet, 3)) + ['"a\\"b"', "/* x */ */", "-1.5e-3", "_a1 ", "\r\n\n"]
    for term in parser.terminals:
        pattern = term.pattern.to_regexp()
        dfa = fsm.Dfa.from_expr(regex_to_expr(pattern, semantics="match"))
        for s in samples:
            assert dfa.accepts(s.encode()) == expected(pattern, s, "match"), (term.name, s)


# --------------------------------------------------------------------------- Unicode


def _all_chars():
    return (chr(c) for c in itertools.chain(range(0xD800), range(0xE000, 0x110000)))


@pytest.mark.parametrize("pattern, flags", [
    (r"\d", 0), (r"\w", 0), (r"\s", 0), (r"\W", 0), (r"[^\d\s]", 0),
    (r"\w", re.ASCII), (r".", 0), (r".", re.DOTALL),
])
def test_unicode_classes_match_re_on_every_code_point(pattern, flags):
    expr = regex_to_expr(pattern, flags)
    assert isinstance(expr, ir.CharSet)
    rx = re.compile(pattern, flags)
    ranges = expr.ranges
    bad = []
    k = 0
    for ch in _all_chars():
        c = ord(ch)
        while k < len(ranges) and ranges[k][1] < c:
            k += 1
        mine = k < len(ranges) and ranges[k][0] <= c
        if mine != (rx.fullmatch(ch) is not None):
            bad.append(hex(c))
    assert not bad, bad[:10]


@pytest.mark.parametrize("pattern", [
    r"(?i)k", r"(?i)s", r"(?i)[a-z]", r"(?i)[^a-z]", r"(?i)[k-m\d]", r"(?i)σ", r"(?i)ß",
    r"(?i)[à-ÿ]", r"(?i)\U00010400", r"(?i)[\U00010400-\U0001044f]", r"(?i)[^\W\d]",
    r"(?ia)[a-z]", r"(?ia)k", r"(?i)ǅ", r"(?i)ΐ", r"(?i)[Ω]",
])
def test_ignorecase_classes_match_re(pattern):
    expr = regex_to_expr(pattern)
    rx = re.compile(pattern)
    ranges = getattr(expr, "ranges", ())

    def mine(c):
        return any(lo <= c <= hi for lo, hi in ranges)

    # Every code point that has any case mapping, and a stride through the rest.
    interesting = [c for c in range(0x20000) if chr(c).lower() != chr(c) or
                   chr(c).upper() != chr(c)]
    for c in itertools.chain(interesting, range(0, 0x110000, 97)):
        if 0xD800 <= c <= 0xDFFF:
            continue
        assert mine(c) == (rx.fullmatch(chr(c)) is not None), (pattern, hex(c))


def test_ignorecase_words():
    check_exhaustive(r"(?i)straße", ["s", "S", "ſ", "ß", "ẞ", "t", "R", "a", "e"], 0)
    e = regex_to_expr(r"(?i)straße")
    for s in ["STRAßE", "straẞe", "ſtraße", "STRASSE", "strasse"]:
        assert ir_matches(e, s.encode()) == (re.fullmatch(r"(?i)straße", s) is not None)
    check_exhaustive(r"(?i:k)K", ["k", "K", "\u212a"], 3)
    check_exhaustive(r"(?i)a(?-i:b)", ["a", "A", "b", "B"], 3)


def test_multibyte_characters():
    check_exhaustive(r"😀{2,3}|é+中?", ["😀", "é", "中", "e"], 4)
    check_exhaustive(r"[^😀é]x", ["😀", "é", "中", "x"], 3)
    e = regex_to_expr(r"中")
    # A token boundary inside a character: only the whole encoding is accepted.
    assert ir_matches(e, "中".encode())
    assert not ir_matches(e, "中".encode()[:2])
    assert not ir_matches(e, b"\xe4\xb8\xae")  # 丮, same first two bytes


def test_search_anchors_and_newline_before_end():
    check_exhaustive(r"^[a-z]+$", ["a", "1", "\n"], 4, "search")
    check_exhaustive(r"^$", ["a", "\n"], 3, "search")
    check_exhaustive(r"(?m)^a$", ["a", "b", "\n"], 4, "search")
    check_exhaustive(r"a\Z|^b|c$", ["a", "b", "c", "\n"], 4, "search")
    check_exhaustive(r"\bfoo\b", ["f", "o", " ", "é"], 5, "search")
    check_exhaustive(r"\B", ["a", " "], 3, "search")
    check_exhaustive(r"a\b|\Bb", ["a", "b", " ", "é"], 3, "fullmatch")
    check_exhaustive(r"$\n", ["a", "\n"], 3, "search")
    # JSON Schema's "pattern": a trailing newline passes "$", as jsonschema uses re.search.
    e = regex_to_expr(r"^\d{3}$", semantics="search")
    assert ir_matches(e, b"123\n") and not ir_matches(e, b"1234")


def test_lookarounds():
    check_exhaustive(r"(?!.*--)[a-z-]{1,4}", ["a", "-"], 5)
    check_exhaustive(r"(?=\w*\d)(?=\w*[a-z])\w{2,4}", ["a", "1", "_"], 5)
    check_exhaustive(r"a(?=b)|(?<=a)b|(?<!a)c", ["a", "b", "c"], 3, "search")
    check_exhaustive(r"(?:(?<=a)b|a)+", ["a", "b"], 5)
    check_exhaustive(r"x(?=(?!ab)a)\w+", ["x", "a", "b"], 4)
    check_exhaustive(r"(?<=(?<!b)a)b|.", ["a", "b"], 3, "search")
    check_exhaustive(r"a(?=b$)", ["a", "b", "\n"], 4, "search")


def test_backreferences_and_conditionals():
    check_exhaustive(r"(a|bc)x\1", ["a", "b", "c", "x"], 5)
    check_exhaustive(r"(?i)(a)\1", ["a", "A"], 3)
    check_exhaustive(r"(a)?(?(1)b|c)", ["a", "b", "c"], 3)
    check_exhaustive(r"(?:(a|ab)\1)+", ["a", "b"], 6, "match")
    check_exhaustive(r"(?P<q>['\"])x*(?P=q)", ["'", '"', "x"], 4)


@pytest.mark.skipif(not hasattr(re, "NOFLAG"), reason="possessive forms need Python 3.11")
def test_possessive_and_atomic():
    check_exhaustive(r"a*+a", ["a"], 3)
    check_exhaustive(r"a{1,2}+a", ["a"], 4)
    check_exhaustive(r"(?:ab)*+a", ["a", "b"], 5)
    check_exhaustive(r"(?>a+)b|(?>a*?)a", ["a", "b"], 4)
    with pytest.raises(GrammarError, match="atomic group"):
        regex_to_expr(r"(?>ab|a)b")


# --------------------------------------------------------------------------- sizes and errors


def test_large_counts_stay_compact():
    e = regex_to_expr(r"[a-z]{1,5000}")
    assert isinstance(e, ir.Repeat) and (e.min, e.max) == (1, 5000)
    e = regex_to_expr(r"^\d{2,100000}$", semantics="search")
    assert any(isinstance(x, ir.Repeat) and x.max == 100000
               for x in getattr(e, "items", (e,)))
    with pytest.raises(GrammarError, match="too large"):
        regex_to_expr(r"a{1000000000}")
    with pytest.raises(GrammarError, match="too large"):
        regex_to_expr(r"(?:a{1000}){1001}")
    assert MAX_REPEAT_SIZE >= 100_000


def test_large_counts_in_automata_are_bounded():
    e = regex_to_expr(r"(?=a)a{1,300}", semantics="fullmatch")
    dfa = fsm.Dfa.from_expr(e)
    assert dfa.accepts(b"a" * 300) and not dfa.accepts(b"a" * 301)
    with pytest.raises(GrammarError, match="too large|too complex"):
        regex_to_expr(r"(?=a)(?:\w{1000}){100}", semantics="fullmatch")


@pytest.mark.parametrize("pattern, where", [
    ("a(b", "position 1"),
    ("[a-", "unterminated character set at position 0"),
    ("a{2,1}", "position 2"),
    ("(?<=a+)b", "look-behind requires fixed-width"),
    ("x\\", "position 1"),
    ("ab\n(?", "position 5 (line 2, column 3)"),
])
def test_invalid_regexes_point_at_the_error(pattern, where):
    with pytest.raises(GrammarError, match=re.escape(where)):
        regex_to_expr(pattern)


def test_unsupported_constructs_are_named():
    with pytest.raises(GrammarError, match=r"lookbehind .* position 0"):
        regex_to_expr(r"(?<!\\)x", semantics="match")
    with pytest.raises(GrammarError, match="backreference .* position 5"):
        regex_to_expr(r"(a*)b\1")
    with pytest.raises(GrammarError, match="backreference"):
        regex_to_expr(r"(a)*\1")
    with pytest.raises(GrammarError, match="semantics"):
        regex_to_expr("a", semantics="prefix")


def test_with_reference_oracle():
    from grammask.grammar.reference import matches

    for pattern, semantics, s in [(ESCAPED_STRING, "match", '"a\\"b"'),
                                  (r"^\w+@\w+\.com$", "search", "me@x.com\n"),
                                  (r"(?i)ab+", "fullmatch", "ABbB")]:
        g = Grammar({"root": regex_to_expr(pattern, semantics=semantics)}, "root")
        assert matches(g, s.encode()) == expected(pattern, s, semantics)
        assert matches(g, (s + "!").encode()) == expected(pattern, s + "!", semantics)


@pytest.mark.parametrize("pattern, semantics", [
    (ESCAPED_STRING, "match"), (C_COMMENT, "match"), (r"(?![^a])", "search"),
    (r"\bfoo\b", "search"), (r"(?=.*\d)(?=.*[a-z]).{2,6}", "fullmatch"),
    (r"[^à-ÿ\sé]{1,2}(?!\w)", "search"), (r"(?i)ab|ac", "match"),
])
def test_automata_are_minimal(pattern, semantics):
    e = regex_to_expr(pattern, semantics=semantics)
    automata = [x for x in _nodes(e) if isinstance(x, ir.Automaton)]
    assert automata
    for a in automata:
        assert len(a.edges) == fsm.Dfa.from_automaton(a).minimize().n_states


def _nodes(e):
    yield e
    for child in getattr(e, "items", ()):
        yield from _nodes(child)
    if isinstance(e, ir.Repeat):
        yield from _nodes(e.item)


def test_assertions_only_take_a_small_window():
    # The \b needs one character on each side; the {1,256} stays a compact Repeat.
    e = regex_to_expr(r"^[-a-z0-9.]{1,256}\.[a-z()]{1,6}\b([-a-z0-9()@:%_+.~#?&/=]*)$",
                      semantics="search")
    assert any(isinstance(x, ir.Repeat) and x.max == 256 for x in _nodes(e))
    assert sum(len(x.edges) for x in _nodes(e) if isinstance(x, ir.Automaton)) < 100
    check_exhaustive(r"a{1,3}(?<=a)\bb?(?=b)b+", ["a", "b", " "], 6)
    check_exhaustive(r"x*(?<!y)y{2,}\B", ["x", "y", " "], 5, "search")


def test_concurrent_compilation_agrees_with_sequential():
    from concurrent.futures import ThreadPoolExecutor

    from grammask.grammar import regex as regex_module

    patterns = [(r"\bfoo\b", "search"), (r"(?=\w*\d)\w{2,5}", "fullmatch"), (ESCAPED_STRING, "match"),
                (r"(?i)[k-mσ]+(?<!σ)", "fullmatch"), (r"[^é😀]{1,3}\B", "search"), (C_COMMENT, "match")]
    samples = ["foo", "a foo", "ab1", 'x"a\\"b"', "kΣσ", "kM", "é😀x", "/**/", "/* */ */", "aé"]

    def verdicts(item):
        pattern, semantics = item
        regex_module._translate.cache_clear()
        expr = regex_to_expr(pattern, semantics=semantics)
        return [ir_matches(expr, s.encode()) for s in samples]

    want = [[expected(p, s, sem) for s in samples] for p, sem in patterns]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(verdicts, patterns * 3))
    assert got == want * 3
