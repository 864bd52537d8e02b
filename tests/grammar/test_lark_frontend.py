"""The Lark front-end: language equality with Lark's Earley parser (dynamic_complete lexer)
on hand-picked grammars and strings, IR shape, and error messages."""

from __future__ import annotations

import importlib.util

import pytest
from lark import Lark
from lark.exceptions import UnexpectedInput

from grammask.errors import GrammarError
from grammask.grammar import parse_grammar
from grammask.grammar.ebnf import MAX_REPETITION, grammar_from_lark
from grammask.grammar.ir import Grammar, Ref, refs_of
from grammask.grammar.reference import matches

needs_regex = pytest.mark.skipif(
    importlib.util.find_spec("grammask.grammar.regex") is None,
    reason="regex terminals need grammask.grammar.regex",
)


def lark_accepts(text: str, s: str, start: str = "start") -> bool:
    parser = Lark(text, parser="earley", lexer="dynamic_complete", start=start)
    try:
        parser.parse(s)
    except UnexpectedInput:
        return False
    return True


def check(text: str, accepted: list[str], rejected: list[str], start: str | None = None):
    """Both grammask's IR and Lark accept ``accepted`` and reject ``rejected``."""
    g = grammar_from_lark(text, start=start)
    for s in accepted:
        assert lark_accepts(text, s, start or "start"), f"Lark rejects {s!r}"
        assert matches(g, s.encode()), f"IR rejects {s!r}"
    for s in rejected:
        assert not lark_accepts(text, s, start or "start"), f"Lark accepts {s!r}"
        assert not matches(g, s.encode()), f"IR accepts {s!r}"
    return g


# --------------------------------------------------------------------------- constructs


def test_operators_and_groups():
    check(
        """
        start: "a" b* (c | "x")? [d] e+
        b: "b"
        c: "c"
        d: "d"
        e: "e"
        """,
        ["ae", "abbce", "axdee", "abdeee", "acde"],
        ["a", "e", "axce", "acxe", "aeb", "adde", ""],
    )


def test_bounded_repetition():
    check(
        """
        start: x~2 "-" y~1..3
        x: "x"
        y: "y"
        """,
        ["xx-y", "xx-yy", "xx-yyy"],
        ["x-y", "xxx-y", "xx-", "xx-yyyy"],
    )


def test_rule_modifiers_and_aliases_do_not_change_the_language():
    check(
        """
        ?start: item+ -> items
        _sep: ","
        !item: "a" _sep | "b" -> bee
        """,
        ["a,", "b", "a,ba,", "bb"],
        ["a", ",", "ab,"],
    )


def test_left_and_right_recursion():
    text = """
        start: expr
        expr: expr "+" term | term
        term: atom "*" term | atom
        atom: "x" | "(" expr ")"
        """
    check(text, ["x", "x+x*x", "(x+x)*x", "((x))"], ["", "x+", "+x", "(x", "x**x"])


def test_templates():
    g = check(
        """
        start: _list{item, ","} ";" _list{"z", "-"}
        _list{x, sep}: x (sep x)*
        item: "a" | "b"
        """,
        ["a;z", "a,b,a;z-z", "b;z-z-z"],
        ["a,;z", ";z", "a;", "a;z,z"],
    )
    # one rule per distinct instantiation
    assert sum(name.startswith("__gm_tpl_") for name in g.rules) == 2


def test_template_of_templates_and_recursive_template():
    check(
        """
        start: nest{"a"}
        nest{x}: x | "[" nest{x} "]"
        """,
        ["a", "[a]", "[[[a]]]"],
        ["[a", "[]", "aa"],
    )


def test_case_insensitive_literals():
    check(
        """
        start: "select"i " " NAME
        NAME: "Straße"i
        """,
        ["select Straße", "SELECT STRAẞE", "SeLeCt straße"],
        ["selec Straße", "select strasse"],
    )


def test_ignorecase_literal_matches_re_exactly():
    # 'K' (Kelvin sign) and 'ſ' (long s) are case-equal to k and s for Python's re
    check('start: "ks"i', ["ks", "KS", "\u212as", "k\u017f"], ["k", "kss"])


def test_char_ranges():
    check(
        """
        start: "a".."c" DIGIT+
        DIGIT: "0".."9"
        """,
        ["a0", "c123"],
        ["d0", "a", "0"],
    )


def test_literal_alternation_terminal():
    # Lark joins these into one regex, longest first; every literal stays a lexeme
    check(
        """
        start: KW+
        KW: "ab" | "a" | "abc"
        """,
        ["a", "ab", "abc", "aab", "abca"],
        ["b", "ac"],
    )


def test_override_and_extend():
    check(
        """
        start: a
        a: "x"
        %override a: "y"
        %extend a: "z"
        """,
        ["y", "z"],
        ["x"],
    )


# --------------------------------------------------------------------------- %ignore


def test_ignore_at_start_between_and_end():
    text = """
        start: "a" "b"*
        %ignore " "
        """
    check(text, ["ab", " ab", "ab ", "a b", "  a  b b  ", "a"], ["", " ", "a a", "ba"])


def test_ignore_with_nullable_start():
    check(
        """
        start: "a"*
        %ignore "_"
        """,
        ["", "_", "__", "_a_a_"],
        ["b"],
    )


def test_ignore_is_modelled_with_one_shared_rule():
    g = grammar_from_lark(
        """
        start: "a" "b" "c" X X
        X: "x"
        %ignore " "
        """
    )
    assert g.start == "__gm_start"
    assert "__gm_ignore" in g.rules
    assert len(g.rules) == 3  # the wrapper, the ignored run and start itself


@needs_regex
def test_ignore_is_greedy_like_lark():
    # Lark skips ignored text by its single (greedy) match: after "a", WS eats both spaces
    # and " b" no longer fits; with one space " b" matches directly.
    text = """
        start: "a" " b"
        %import common.WS
        %ignore WS
        """
    check(text, ["a b", " a b ", "a b\n"], ["ab", "a  b", "a \t b", "a\n b"])


@needs_regex
def test_line_comment_runs_to_the_end_of_the_line():
    text = r"""
        start: WORD ("," WORD)* NL?
        NL: "\n"
        %import common (WORD, SH_COMMENT)
        %ignore " "
        %ignore SH_COMMENT
        """
    check(
        text,
        ["a,b", "a # note\n", "a #\n", "a,b #x", "a # x, b"],
        ["a, # x\n", "a, #x", "a #x\n,b", "a,#c\nb", "#a"],
    )


# --------------------------------------------------------------------------- regex terminals


@needs_regex
def test_common_imports():
    text = """
        start: ESCAPED_STRING ":" SIGNED_NUMBER ":" CNAME
        %import common.ESCAPED_STRING
        %import common (SIGNED_NUMBER, CNAME)
        %import common.WS
        %ignore WS
        """
    check(
        text,
        [
            '"x":1:a',
            '"a\\"b" : -1.5e3 : _x9',
            '"" : +7 : Z',
            '"a\\\\":.5:q',
            '"\\\\\\"":1:a',
        ],
        ['"a\\":1:a', '"x":1:9a', '"x":-:a', '"x":1.2.3:a', "x:1:a"],
    )


@needs_regex
def test_lazy_regex_terminal_semantics():
    # /a+?/ matches one "a" at a time under re.match: "aa" needs two lexemes
    check("start: A\nA: /a+?/", ["a"], ["aa", ""])
    check("start: A+\nA: /a+?/", ["a", "aa", "aaa"], [""])


@needs_regex
def test_regex_flags():
    check('start: /abc/i "." /a.b/s "." /a b/x', ["AbC.a\nb.ab", "abc.a-b.ab"],
          ["abc.a\nb.a b", "abd.a-b.ab"])


@needs_regex
def test_json_grammar():
    text = r"""
        start: json
        ?json: obj | arr | ESCAPED_STRING | SIGNED_NUMBER | LITERAL
        obj: "{" (_member ("," _member)*)? "}"
        _member: ESCAPED_STRING ":" json
        arr: "[" _items{json}? "]"
        _items{x}: x ("," x)*
        LITERAL: "true" | "false" | "null"
        %import common (ESCAPED_STRING, SIGNED_NUMBER, WS)
        %ignore WS
        """
    g = check(
        text,
        ['{"a": [1, 2.5, -3e2, true, null], "b": {"c": "d\\"e"}}', "[]", " 7 ", '"x"'],
        ['{"a" 1}', "[1,]", "{,}", "tru", '"a'],
    )
    # one rule per named terminal, not per occurrence
    assert len(g.rules) < 20


# --------------------------------------------------------------------------- start rule


def test_start_option():
    g = check("start: a\na: \"x\" b\nb: \"y\"", ["y"], ["xy", "x"], start="b")
    assert g.start == "b"


def test_parse_grammar_dispatches_to_lark():
    g = parse_grammar('start: "a" | "b"\n')
    assert isinstance(g, Grammar)
    assert matches(g, b"a") and not matches(g, b"c")
    assert parse_grammar('root: "a"', syntax="lark", start="root").start == "root"


# --------------------------------------------------------------------------- errors


def error_of(text: str, **kw) -> str:
    with pytest.raises(GrammarError) as info:
        grammar_from_lark(text, **kw)
    return str(info.value)


def test_syntax_error_has_line_and_column():
    msg = error_of('start: "a"\nfoo: ( "b"\n')
    assert "line 2" in msg and "column" in msg


def test_unexpected_token_has_line_and_column():
    msg = error_of('start: "a"\n\nb: "x" )\n')
    assert "line 3" in msg


def test_undefined_rule_points_at_its_use():
    msg = error_of('start: "a"\n    | missing\n')
    assert "missing" in msg and "line 2 column 7" in msg


def test_undefined_terminal():
    assert "NOPE" in error_of("start: NOPE\n")


def test_missing_start_rule():
    msg = error_of('begin: "a"\n')
    assert "'start'" in msg and "begin" in msg
    assert "'top'" in error_of('start: "a"\n', start="top")


def test_declare_is_refused():
    msg = error_of('start: "a" INDENT\n%declare INDENT\n')
    assert "%declare" in msg and "line 2" in msg


def test_empty_language():
    assert "empty" in error_of('start: start "a"\n')
    assert "empty" in error_of('start: a\na: "x" a\n')


def test_huge_repetition_is_refused():
    msg = error_of('start: "a"~1000000\n')
    assert str(MAX_REPETITION) in msg and "line 1" in msg
    assert "range" in error_of('start: "a"~3..2\n')


def test_template_without_arguments():
    assert "template" in error_of('start: t\nt{x}: x\n')


def test_empty_literal_is_refused():
    assert "line 1" in error_of('start: "" "a"\n')


def test_deep_nesting_is_an_error_not_a_crash():
    depth = 3000
    text = "start: " + "(" * depth + '"a"' + ")" * depth + "\n"
    try:
        g = grammar_from_lark(text)
    except GrammarError as e:
        assert "deep" in str(e)
    else:
        assert matches(g, b"a")


def test_reserved_prefix_cannot_be_used():
    # Lark's syntax has no names starting with "__", so generated "__gm_" names never
    # collide with user rules
    assert "line 1 column 8" in error_of('start: __gm_ignore\n__gm_ignore: "a"\n')


def test_refs_are_all_defined():
    g = grammar_from_lark(
        """
        start: a | b
        a: "x" b?
        b: "y" a?
        %ignore " "
        """
    )
    for body in g.rules.values():
        assert refs_of(body) <= set(g.rules)
    assert isinstance(g.rules["__gm_start"].items[1], Ref)


def test_case_variants_equal_re_ignorecase_on_every_code_point():
    import re

    from grammask.grammar.ebnf import _case_variants

    for ch in "kSiµß":
        pattern = re.compile(re.escape(ch), re.IGNORECASE)
        expected = [c for c in range(0x110000) if pattern.fullmatch(chr(c))]
        assert list(_case_variants(ch)) == expected, ch


@needs_regex
def test_several_ignored_terminals():
    text = """
        start: WORD ("," WORD)*
        %import common (WORD, WS, SH_COMMENT)
        %ignore WS
        %ignore SH_COMMENT
        """
    check(text, ["a,b", "a # note\n, b", "# lead\na", "a #tail"], ["a b", "a, # x\n", "#a"])


def test_unicode_literals_and_ranges():
    check('start: "α".."ω"+ "é" "😀"?', ["αωé", "βé😀"], ["aé", "αe", "α"])


def test_missing_import():
    assert "nothere" in error_of("%import nothere.X\nstart: X\n")


@needs_regex
def test_imports_of_lark_grammars_are_kept_and_copied(monkeypatch):
    """An ``%import`` from Lark's own grammars is parsed once and copied into later grammars:
    the IR equals the one built with nothing kept, aliases give their own entries, a copy is
    not shared with the next grammar, and a clash with a rule of the grammar still fails."""
    import grammask.grammar.ebnf as ebnf

    texts = [
        "start: NUMBER NAME\n%import common.NUMBER\n%import common.CNAME -> NAME\n"
        "%import common.WS_INLINE\n%ignore WS_INLINE\n",
        "start: NAME\n%import common.LETTER -> NAME\n",
        "start: NAME NUMBER\n%import common.CNAME -> NAME\n%import common.NUMBER\n",
    ]
    monkeypatch.setattr(ebnf, "_IMPORTS", {})
    first = [grammar_from_lark(t) for t in texts]
    kept = dict(ebnf._IMPORTS)
    assert len(kept) == 3  # one entry per import statement group: module and aliases
    again = [grammar_from_lark(t) for t in texts]
    assert ebnf._IMPORTS == kept
    for a, b in zip(first, again):  # (automaton nodes compare by identity: compare the text)
        assert repr(a.rules) == repr(b.rules)
    assert matches(again[1], b"a") and not matches(again[1], b"ab")
    assert matches(again[0], b"12 x_1") and not matches(again[0], b"x 12")
    # the same import as texts[2] (kept), clashing with the grammar's own NUMBER
    clash = 'start: NAME NUMBER\nNUMBER: "1"\n%import common.CNAME -> NAME\n%import common.NUMBER\n'
    with pytest.raises(GrammarError, match="NUMBER"):
        grammar_from_lark(clash)
    assert ebnf._IMPORTS == kept


@needs_regex
def test_relative_imports_are_not_kept(tmp_path, monkeypatch):
    """An import with a base path reads the file beside the grammar (one per directory):
    Lark reads it each time; nothing is kept for it."""
    import grammask.grammar.ebnf as ebnf
    from lark.load_grammar import GrammarBuilder

    monkeypatch.setattr(ebnf, "_IMPORTS", {})
    (tmp_path / "common.lark").write_text('NUMBER: "x"\n')
    builder = ebnf._builder_class(GrammarBuilder)()
    builder.do_import(("common",), str(tmp_path), {"NUMBER": "NUMBER"})
    # the second reads no new file (Lark has it already): still not kept
    builder.do_import(("common",), str(tmp_path), {"NUMBER": "OTHER"})
    assert {"NUMBER", "OTHER"} <= set(builder._definitions) and ebnf._IMPORTS == {}
    ebnf._builder_class(GrammarBuilder)().load_grammar(
        "start: NUMBER\n%import common.NUMBER\n", "<string>")
    assert len(ebnf._IMPORTS) == 1  # the library import is kept
