"""The GBNF front-end: grammars in the style of llama.cpp's grammars folder, every escape
and class form, the lenient layout, and errors with line and column."""

from __future__ import annotations

import json

import pytest

from grammask.errors import GrammarError
from grammask.grammar import parse_grammar
from grammask.grammar.ebnf import MAX_REPETITION
from grammask.grammar.gbnf import grammar_from_gbnf
from grammask.grammar.ir import CharSet, Literal
from grammask.grammar.reference import matches

JSON_GBNF = r"""
# JSON values; blanks (space, tab, newline) allowed around every token
root    ::= element

element ::= blank (
      object
    | array
    | text
    | number
    | "true" | "false" | "null"
  ) blank

object  ::= "{" blank ( member ( "," member )* )? "}"
member  ::= blank text blank ":" element
array   ::= "[" blank ( element ( "," element )* )? "]"

text    ::= "\"" ( plain | "\\" escaped )* "\""
plain   ::= [^"\\\x00-\x1F\x7F]        # any character but quote, backslash, controls
escaped ::= ["\\/bfnrt] | "u" hex{4}
hex     ::= [0-9a-fA-F]

number  ::= "-"? ( "0" | [1-9] [0-9]{0,15} )
            ( "." [0-9]+ )?
            ( [eE] [+\-]? [0-9]+ )?
blank   ::= [ \t\n]{0,10}
"""

ARITHMETIC_GBNF = r"""
root     ::= ( equation "\n" )+
equation ::= sum " = " sum
sum      ::= product ( [+\-] product )*
product  ::= factor ( [*/] factor )*
factor   ::= [0-9]+ | [a-z] [a-z0-9_]* | "(" sum ")"
"""

LIST_GBNF = r"""
root ::= ( "* " line "\n" ){1,5}
# a line: anything but line and paragraph breaks
line ::= [^\n\r\x0B\x0C\x85\u2028\u2029]+
"""


def accepts(g, s: str) -> bool:
    return matches(g, s.encode("utf-8"))


def test_json_gbnf():
    g = grammar_from_gbnf(JSON_GBNF)
    for doc in [{}, {"a": [1, 2.5, "x\ny", True, None]}, {"é": {"b": []}}, [1e30, -0.5]]:
        assert accepts(g, json.dumps(doc))
        assert accepts(g, json.dumps(doc, indent=1, ensure_ascii=False))
    assert accepts(g, '{"a": "\\u00e9\\/"}')
    for bad in ['{"a" 1}', '{"a": [1,]}', '{"a": "\x01"}', '{"a": 01}', "[1", "tru"]:
        assert not accepts(g, bad), bad


def test_arithmetic_gbnf():
    g = grammar_from_gbnf(ARITHMETIC_GBNF)
    assert accepts(g, "1+2 = 3\n")
    assert accepts(g, "(x*y2)/3 = z\nfoo = 1-(2)\n")
    assert not accepts(g, "1+ = 3\n")
    assert not accepts(g, "1 = 2")
    assert not accepts(g, "(1 = 2\n")


def test_list_gbnf():
    g = grammar_from_gbnf(LIST_GBNF)
    assert accepts(g, "* milk\n* ünïcödé 🥛\n")
    assert not accepts(g, "* a\u2028b\n")
    assert not accepts(g, "* \n")
    assert not accepts(g, "* a\n" * 6)


def test_unused_rules_are_dropped_and_names_kept():
    g = grammar_from_gbnf('root ::= a-b\na-b ::= "x" c_1\nc_1 ::= "y"\nunused ::= "z"\n')
    assert list(g.rules) == ["root", "a-b", "c_1"]
    assert accepts(g, "xy")


# --------------------------------------------------------------------------- escapes


def test_every_literal_escape():
    g = grammar_from_gbnf(r'root ::= "\n\r\t\\\"\[\]\x41\u00e9\U0001F600\-\/"')
    assert g.rules["root"] == Literal('\n\r\t\\"[]Aé😀-/'.encode())


def test_hex_escape_is_a_code_point_not_a_byte():
    g = grammar_from_gbnf(r'root ::= "\xff"')
    assert g.rules["root"] == Literal("ÿ".encode())


def test_class_forms():
    cases = {
        r"[abc]": ("b", "d"),
        r"[a-c0-2]": ("1", "3"),
        r"[^a-c]": ("é", "b"),
        r"[\x00-\x1F]": ("\x1f", " "),
        r"[\u0100-\u017F]": ("ſ", "ÿ"),
        r"[\]\[]": ("]", "a"),
        r"[^\n]": ("\t", "\n"),
        r"[a-]": ("-", "b"),
        r"[-a]": ("-", "b"),
        r"[\^a]": ("^", "b"),
        r"[😀-😂]": ("😁", "😃"),
        r"[\U0001F600]": ("😀", "😁"),
    }
    for cls, (inside, outside) in cases.items():
        g = grammar_from_gbnf(f"root ::= {cls}")
        assert accepts(g, inside), (cls, inside)
        assert not accepts(g, outside), (cls, outside)


def test_empty_and_full_negated_classes():
    g = grammar_from_gbnf('root ::= "a" | []')
    assert accepts(g, "a")
    g = grammar_from_gbnf("root ::= [^]")
    assert accepts(g, "\U0010ffff") and not accepts(g, "")


def test_dot_is_any_character():
    g = grammar_from_gbnf("root ::= . .")
    assert isinstance(g.rules["root"].items[0], CharSet)
    assert accepts(g, "a\n") and accepts(g, "é😀")
    assert not accepts(g, "abc")


# --------------------------------------------------------------------------- repetition


@pytest.mark.parametrize(
    "op, lo, hi",
    [("*", 0, None), ("+", 1, None), ("?", 0, 1), ("{3}", 3, 3), ("{2,}", 2, None),
     ("{1,3}", 1, 3), ("{,2}", 0, 2), ("{ 2 , 3 }", 2, 3)],
)
def test_repetition_operators(op, lo, hi):
    g = grammar_from_gbnf(f'root ::= "a"{op} "b"')
    for n in range(9):
        expected = lo <= n and (hi is None or n <= hi)
        assert accepts(g, "a" * n + "b") == expected, (op, n)


def test_stacked_postfix_operators():
    g = grammar_from_gbnf('root ::= ("a" "b"?)+?')
    assert accepts(g, "") and accepts(g, "aab") and not accepts(g, "b")


# --------------------------------------------------------------------------- layout


def test_comments_and_multiline_rules():
    text = (
        "# leading comment\n"
        "root ::= \"a\"   # trailing comment\n"
        "   \"b\"\n"          # continuation: the next line does not start a rule
        "  | \"c\"\n"         # alternative on its own line
        "\n"
        "   # a comment line inside the rule's layout\n"
        "other ::= (\n"
        "   \"x\" |\n"
        "   \"y\"\n"
        ")\n"
    )
    g = grammar_from_gbnf(text)
    assert accepts(g, "ab") and accepts(g, "c") and not accepts(g, "a")


def test_crlf_line_endings():
    g = grammar_from_gbnf('root ::= a\r\na ::= "x"\r\n  | "y"\r\n')
    assert accepts(g, "x") and accepts(g, "y")


def test_empty_alternatives():
    g = grammar_from_gbnf('root ::= "a" |\nb ::= "c"')
    assert accepts(g, "") and accepts(g, "a")
    g = grammar_from_gbnf('root ::= ()\n')
    assert accepts(g, "")


def test_start_option_and_recursion():
    g = grammar_from_gbnf('root ::= "r"\nexpr ::= expr "+" "1" | "1"\n', start="expr")
    assert accepts(g, "1+1+1") and not accepts(g, "r")


def test_parse_grammar_detects_gbnf():
    g = parse_grammar('root ::= "a" b\nb ::= "c"')
    assert accepts(g, "ac")
    # "::=" inside a Lark string literal does not make a grammar GBNF
    g = parse_grammar('start: "a ::= b"')
    assert accepts(g, "a ::= b")
    g = parse_grammar('main ::= "z"', syntax="gbnf", start="main")
    assert accepts(g, "z")
    with pytest.raises(ValueError):
        parse_grammar('root ::= "a"', syntax="bnf")


# --------------------------------------------------------------------------- errors


def error_of(text: str, **kw) -> str:
    with pytest.raises(GrammarError) as info:
        grammar_from_gbnf(text, **kw)
    return str(info.value)


@pytest.mark.parametrize(
    "text, where, words",
    [
        ('root ::= "abc\n', "line 1 column 10", "unterminated string"),
        ('root ::= "a"\nb = "x"\n', "line 2 column 3", "'::='"),
        ('root ::= "a"\nb ::= = "x"\n', "line 2 column 7", "'::='"),
        ('root ::= "\\q"', "line 1 column 11", "unknown escape"),
        ('root ::= "\\x4"', "line 1 column 11", "hex digits"),
        ('root ::= "\\uD800"', "line 1 column 11", "scalar"),
        ('root ::= [z-a]', "line 1 column 11", "reversed"),
        ('root ::= [abc', "line 1 column 10", "unterminated character class"),
        ('root ::= ("a"', "line 1 column 14", "')'"),
        ('root ::= "a")', "line 1 column 13", "unmatched"),
        ('root ::= "a"{3,2}', "line 1 column 13", "maximum below"),
        ('root ::= "a"{x}', "line 1 column 14", "repetition count"),
        ('root ::= "a" b ::= "c"', "line 1 column 14", "new line"),
        ('root ::= <[1234]>', "line 1 column 10", "token references"),
        ('root ::= "a" @', "line 1 column 14", "expected an element"),
        ('::= "a"', "line 1 column 1", "rule name"),
    ],
)
def test_syntax_errors(text, where, words):
    msg = error_of(text)
    assert where in msg and words in msg, msg
    assert "^" in msg  # the excerpt with a caret


def test_undefined_rule_points_at_its_use():
    msg = error_of('root ::= "a"\n  item\n')
    assert "'item'" in msg and "line 2 column 3" in msg


def test_duplicate_rule():
    msg = error_of('root ::= "a"\nx ::= "b"\nx ::= "c"\n')
    assert "more than once" in msg and "line 3 column 1" in msg


def test_missing_root():
    msg = error_of('main ::= "a"\n')
    assert "'root'" in msg and "main" in msg
    assert "'nope'" in error_of('root ::= "a"', start="nope")


def test_empty_language():
    assert "empty" in error_of('root ::= root "a"\n')
    assert "empty" in error_of("root ::= [] [a]\n")


def test_huge_repetition():
    msg = error_of('root ::= "a"{1000000}\n')
    assert str(MAX_REPETITION) in msg and "line 1 column 13" in msg


def test_deep_nesting_is_a_clear_error():
    msg = error_of("root ::= " + "(" * 1000 + '"a"' + ")" * 1000)
    assert "nested" in msg
    g = grammar_from_gbnf("root ::= " + "(" * 150 + '"a"' + ")" * 150)
    assert accepts(g, "a")
