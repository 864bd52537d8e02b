"""grammask.testing.from_grammar: draws are members of the language, deep recursion
terminates, shrinking reaches short strings, token-sequence mode agrees with the matcher."""

from __future__ import annotations

import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from grammask.errors import GrammarError
from grammask.grammar import parse_grammar
from grammask.grammar.fsm import Dfa
from grammask.grammar.ir import Grammar, alt, byte_ranges, chars, lit, plus, ref, seq, star
from grammask.grammar.reference import matches
from grammask.testing import from_grammar

LARK_EXPR = """
start: expr
expr: expr "+" term | term
term: "(" expr ")" | NUM
NUM: "0".."9"
%ignore " "
"""

GBNF_JSONISH = r"""
root  ::= value
value ::= "[" ws ( value ( "," ws value )* )? "]" | str | [0-9]{1,3}
str   ::= "\"" ( [^"\\] | "\\" ["\\n] )* "\""
ws    ::= [ \n]?
"""


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_draws_are_in_the_language(data):
    for text in (LARK_EXPR, GBNF_JSONISH):
        g = parse_grammar(text)
        s = data.draw(from_grammar(g))
        assert isinstance(s, str)
        assert matches(g, s.encode()), s


@settings(max_examples=40, deadline=None)
@given(from_grammar(GBNF_JSONISH, max_size=8, max_depth=2))
def test_text_input_and_small_limits(s):
    assert matches(parse_grammar(GBNF_JSONISH), s.encode())
    # past the limits every construct is finished by its shortest completion
    assert len(s.encode()) < 80


def test_deep_recursion_terminates_with_shortest_completion():
    # Every rule recurses; shortest derivations go through ties and cycles.
    g = Grammar(
        {
            "root": alt(ref("a"), seq(lit("("), ref("root"), lit(")"))),
            "a": alt(ref("b"), seq(ref("a"), lit("+"), ref("a"))),
            "b": alt(ref("a"), ref("c")),
            "c": alt(seq(lit("y"), ref("c")), lit("z")),
        },
        "root",
    )

    @settings(max_examples=50, deadline=None)
    @given(from_grammar(g, max_depth=0))
    def shortest_only(s):
        # the start rule's own body is drawn; every rule below it is at its shortest
        assert s in ("z", "(z)")

    @settings(max_examples=50, deadline=None)
    @given(from_grammar(g, max_size=10, max_depth=6))
    def bounded(s):
        assert matches(g, s.encode())

    shortest_only()
    bounded()


def test_shrinks_toward_short_strings():
    g = parse_grammar('root ::= ("a" | "b" | "cc")+ ("!" | "?")?')
    assert find(from_grammar(g), lambda s: "b" in s) == "b"
    s = find(from_grammar(g), lambda s: len(s) >= 3)
    # fewest characters; which 3-character string the shrinker settles on depends on its
    # path ("aaa", "aa!" and "acc", two items, all occur)
    assert len(s) == 3, s
    assert find(from_grammar(g), lambda s: "?" in s) == "a?"
    g = parse_grammar(LARK_EXPR)
    assert find(from_grammar(g), lambda s: "+" in s) == "0+0"


def test_bytes_for_byte_grammars_and_on_request():
    g = Grammar({"root": plus(byte_ranges([(0x80, 0xFF)]))}, "root")
    s = find(from_grammar(g), lambda s: True)
    assert s == b"\x80"
    t = find(from_grammar('root ::= "é"', as_bytes=True), lambda s: True)
    assert t == "é".encode()


def test_embedded_automata():
    dfa = Dfa.from_expr(seq(lit("x"), star(alt(chars("a-c"), lit("zz")))))
    g = Grammar({"root": seq(dfa.to_expr("xs"), ref("tail")), "tail": lit(";")}, "root")

    @settings(max_examples=50, deadline=None)
    @given(from_grammar(g, max_size=6))
    def check(s):
        assert matches(g, s.encode()), s
        assert s.startswith("x") and s.endswith(";")

    check()
    assert find(from_grammar(g), lambda s: "zz" in s) == "xzz;"


def test_errors():
    with pytest.raises(GrammarError):
        from_grammar('root ::= root "a"')
    with pytest.raises(GrammarError):
        from_grammar('start: "a" (')
    with pytest.raises(InvalidArgument):
        from_grammar(42)
    with pytest.raises(InvalidArgument):
        from_grammar('root ::= "a"', max_size=-1)


def test_start_override_on_a_grammar_object():
    g = parse_grammar('root ::= "a"\nother ::= "b"', syntax="gbnf", start="root")
    g2 = Grammar(dict(g.rules, other=lit("b")), "root")
    assert find(from_grammar(g2, start="other"), lambda s: True) == "b"


# --------------------------------------------------------------------------- tokens


def small_tokenizer():
    from grammask.automata.tokenizer_info import TokenizerInfo

    vocab = ["<s>", "</s>", "0", "1", "+", "(", ")", " ", "1+", "+(", "0)", " (", "))", "é"]
    vocab += [chr(c) for c in range(0x20, 0x7F) if chr(c) not in vocab]
    return TokenizerInfo(vocab, "raw", stop_token_ids=[1], special_token_ids=[0, 1])


def test_token_sequences_spell_sentences_and_the_matcher_accepts_them():
    from grammask.automata.compiler import GrammarCompiler
    from grammask.automata.matcher import GrammarMatcher

    tok = small_tokenizer()
    g = parse_grammar(LARK_EXPR)
    compiled = GrammarCompiler(tok).compile_grammar(LARK_EXPR)

    @settings(max_examples=40, deadline=None)
    @given(from_grammar(g, tokenizer_info=tok, max_size=12))
    def check(ids):
        assert ids[-1] == 1 and 0 not in ids and 1 not in ids[:-1]
        text = b"".join(tok.decoded_vocab[i] for i in ids[:-1])
        assert matches(g, text)
        m = GrammarMatcher(compiled)
        for i in ids:
            assert m.accept_token(i), (ids, i)
        assert m.is_terminated()

    check()
    # the shortest sentences that need two text tokens (no token spells them whole)
    ids = find(from_grammar(g, tokenizer_info=tok), lambda ids: len(ids) >= 3)
    assert len(ids) == 3 and len(b"".join(tok.decoded_vocab[i] for i in ids)) == 2


def test_token_sequences_without_stop_token():
    tok = small_tokenizer()
    ids = find(from_grammar('root ::= "1+1"', tokenizer_info=tok, stop_token=False),
               lambda ids: True)
    assert [tok.decoded_vocab[i] for i in ids] == [b"1+", b"1"]
