"""GrammarMatcher against brute force and the reference recognizer, on small vocabularies."""

from __future__ import annotations

import itertools
import random
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import grammask as gm
from grammask.grammar import reference
from grammask.grammar.ir import (
    Grammar,
    alt,
    char_ranges,
    chars,
    lit,
    opt,
    plus,
    ref,
    rep,
    seq,
)
from grammask.mask_kernels.bitmask import unpack_bitmask

EOS = 0


def small_vocab(extra: list[bytes] = ()) -> SimpleNamespace:
    """A vocabulary of every string over a small alphabet up to length 3, plus extras, with
    token 0 the stop token and a few padding ids at the end."""
    tokens = [b""]  # id 0: eos (no bytes)
    alphabet = b"ab(+)1"
    for n in (1, 2, 3):
        tokens += [bytes(p) for p in itertools.product(alphabet, repeat=n)]
    tokens += list(extra)
    return SimpleNamespace(vocab_size=len(tokens) + 3, decoded_vocab=tokens,
                           stop_token_ids=[EOS], special_token_ids=[EOS])


VOCAB = small_vocab(["ж".encode(), "ж".encode()[:1], "ж".encode()[1:], "aж".encode(),
                     "€".encode()[:2], "€".encode()[2:]])


def allowed_set(matcher, info) -> set[int]:
    bm = gm.allocate_token_bitmask(1, info.vocab_size)
    matcher.fill_next_token_bitmask(bm)
    return set(np.flatnonzero(unpack_bitmask(bm[0], info.vocab_size)).tolist())


def brute_force(matcher, info) -> set[int]:
    out = set()
    for t in range(info.vocab_size):
        if matcher.accept_token(t):
            out.add(t)
            matcher.rollback(1)
    return out


def check_walk(grammar: Grammar, info, steps: int, rng: random.Random) -> None:
    """Random walk: at every step the mask equals brute force and the reference oracle."""
    compiled = gm.GrammarCompiler(info).compile_grammar(grammar)
    walk_checked(gm.GrammarMatcher(compiled), grammar, info, steps, rng)


def walk_checked(m, grammar: Grammar, info, steps: int, rng: random.Random,
                 oracle: bool = True) -> None:
    """Accepts up to ``steps`` random allowed tokens; before each, the mask must equal brute
    force and (``oracle``) the reference recognizer's viable prefixes."""
    prefix = b""
    for _ in range(steps):
        allowed = allowed_set(m, info)
        assert allowed == brute_force(m, info), prefix
        if oracle:
            for t in range(1, len(info.decoded_vocab)):
                want = reference.is_viable_prefix(grammar, prefix + info.decoded_vocab[t])
                assert (t in allowed) == want, (prefix, info.decoded_vocab[t])
            assert (EOS in allowed) == reference.matches(grammar, prefix), prefix
        choices = sorted(allowed - {EOS})
        if not choices:
            break
        t = rng.choice(choices)
        assert m.accept_token(t)
        prefix += info.decoded_vocab[t]


EXPR = Grammar(
    {
        "e": alt(seq(ref("e"), lit("+"), ref("t")), ref("t")),
        "t": alt(plus(chars("1")), seq(lit("("), ref("e"), lit(")")), lit("ж")),
    },
    "e",
)


def test_left_recursive_expression_grammar():
    check_walk(EXPR, VOCAB, 10, random.Random(0))


def test_indirect_left_recursion_and_nullable_rules():
    g = Grammar(
        {
            "s": alt(seq(ref("x"), lit("a")), lit("b")),
            "x": alt(seq(ref("s"), ref("n")), ref("n")),
            "n": opt(lit("1")),
        },
        "s",
    )
    for seed in range(5):
        check_walk(g, VOCAB, 8, random.Random(seed))


def test_ambiguous_grammar():
    g = Grammar({"s": alt(seq(ref("s"), ref("s")), lit("a"), lit("ab"), lit("b"))}, "s")
    check_walk(g, VOCAB, 8, random.Random(3))


def test_epsilon_cycles():
    g = Grammar({"s": alt(ref("t"), lit("a")), "t": alt(ref("s"), lit(""), seq(ref("t"), lit("b")))}, "s")
    check_walk(g, VOCAB, 6, random.Random(4))


def test_multibyte_characters_split_across_tokens():
    g = Grammar({"s": seq(plus(char_ranges([(0x400, 0x4FF)])), lit("€"))}, "s")
    info = VOCAB
    compiled = gm.GrammarCompiler(info).compile_grammar(g)
    m = gm.GrammarMatcher(compiled)
    ids = {tok: i for i, tok in enumerate(info.decoded_vocab)}
    lead, tail = "ж".encode()[:1], "ж".encode()[1:]
    assert ids[lead] in allowed_set(m, info)
    assert m.accept_token(ids[lead])
    allowed = allowed_set(m, info)
    # only continuation bytes: 0xB6 completes "ж", 0xAC completes "Ь" (U+042C)
    assert allowed == {ids[tail], ids["€".encode()[2:]]}
    assert m.accept_token(ids[tail])
    assert m.accept_token(ids["€".encode()[:2]])
    assert allowed_set(m, info) == {ids["€".encode()[2:]]}
    assert m.accept_token(ids["€".encode()[2:]])
    assert allowed_set(m, info) == {EOS}
    assert m.accept_token(EOS)
    assert m.is_terminated()


# --------------------------------------------------------------------------- random grammars


@st.composite
def random_grammars(draw):
    n_rules = draw(st.integers(1, 3))
    names = [f"r{i}" for i in range(n_rules)]

    def expr(depth):
        leaves = [
            st.sampled_from(["a", "b", "ab", "1", "(", "ba"]).map(lit),
            st.sampled_from(["a-b", "1", "(+"]).map(chars),
            st.sampled_from(names).map(ref),
        ]
        if depth <= 0:
            return st.one_of(leaves)
        sub = expr(depth - 1)
        return st.one_of(
            *leaves,
            st.lists(sub, min_size=2, max_size=3).map(lambda xs: seq(*xs)),
            st.lists(sub, min_size=2, max_size=3).map(lambda xs: alt(*xs)),
            st.tuples(sub, st.integers(0, 2), st.sampled_from([None, 1, 2, 3])).map(
                lambda t: rep(t[0], t[1], None if t[2] is None else max(t[1], t[2]))
            ),
        )

    rules = {name: draw(expr(2)) for name in names}
    # make sure the start rule derives something terminal-only so the language is rarely empty
    rules[names[0]] = alt(rules[names[0]], draw(st.sampled_from([lit("a"), lit("1(")])))
    return Grammar(rules, names[0])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_grammars(), st.integers(0, 2**32 - 1))
def test_random_grammars_masks_match_brute_force_and_oracle(grammar, seed):
    check_walk(grammar, VOCAB, 6, random.Random(seed))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_grammars(), st.lists(st.sampled_from(list(b"ab(+)1")), max_size=8))
def test_random_grammars_accept_string_matches_oracle(grammar, data):
    data = bytes(data)
    compiled = gm.GrammarCompiler(VOCAB).compile_grammar(grammar)
    m = gm.GrammarMatcher(compiled)
    ok = m.accept_string(data)
    assert ok == reference.is_viable_prefix(grammar, data)
    if ok:
        assert m.accept_token(EOS) == reference.matches(grammar, data)


# --------------------------------------------------------------------------- API behaviour


def compiled_expr():
    return gm.GrammarCompiler(VOCAB).compile_grammar(EXPR)


def tok(text: str) -> int:
    return VOCAB.decoded_vocab.index(text.encode())


def test_rollback_and_reset_restore_masks():
    m = gm.GrammarMatcher(compiled_expr())
    start = allowed_set(m, VOCAB)
    assert m.accept_token(tok("(1"))
    mid = allowed_set(m, VOCAB)
    assert m.accept_token(tok("+1)"))
    assert m.accept_token(EOS)
    assert m.is_terminated()
    assert not m.accept_token(tok("1"))
    m.rollback(2)
    assert not m.is_terminated()
    assert allowed_set(m, VOCAB) == mid
    m.rollback(1)
    assert allowed_set(m, VOCAB) == start
    with pytest.raises(ValueError):
        m.rollback(1)
    m.accept_token(tok("1"))
    m.reset()
    assert allowed_set(m, VOCAB) == start


def test_terminated_matcher_allows_only_stop_tokens():
    m = gm.GrammarMatcher(compiled_expr())
    assert m.accept_token(tok("1"))
    assert m.accept_token(EOS)
    assert allowed_set(m, VOCAB) == {EOS}


def test_stop_token_only_when_complete_and_override():
    m = gm.GrammarMatcher(compiled_expr(), override_stop_tokens=[tok("b")])
    assert m.stop_token_ids == [tok("b")]
    assert not m.accept_token(tok("b"))  # "(" not complete... nothing accepted yet
    assert m.accept_token(tok("(1"))
    assert not m.accept_token(tok("b"))
    assert tok("b") not in allowed_set(m, VOCAB)
    assert m.accept_token(tok(")"))
    assert tok("b") in allowed_set(m, VOCAB)
    assert EOS not in allowed_set(m, VOCAB)
    assert m.accept_token(tok("b"))
    assert m.is_terminated()


def test_terminate_without_stop_token():
    g = Grammar({"s": seq(lit("a"), opt(lit("b")))}, "s")
    c = gm.GrammarCompiler(VOCAB).compile_grammar(g)
    m = gm.GrammarMatcher(c, terminate_without_stop_token=True)
    assert m.accept_token(tok("a"))
    assert not m.is_terminated()  # "b" may still follow
    assert m.accept_token(tok("b"))
    assert m.is_terminated()


def test_out_of_range_and_special_tokens_are_rejected():
    m = gm.GrammarMatcher(compiled_expr())
    for t in (-1, VOCAB.vocab_size, VOCAB.vocab_size - 1, 10**12, "x", None):
        assert m.accept_token(t) is False
    assert not m.accept_token(EOS)  # nothing accepted yet: not complete


def test_jump_forward_string():
    g = Grammar({"s": seq(lit('{"name": "'), plus(chars("a-z")), lit('", "ж'), lit("ok"))}, "s")
    c = gm.GrammarCompiler(VOCAB).compile_grammar(g)
    m = gm.GrammarMatcher(c)
    assert m.find_jump_forward_string() == '{"name": "'
    assert m.accept_string('{"name": "ab')
    assert m.find_jump_forward_string() == ""  # another letter or the quote
    assert m.accept_string('"')
    assert m.find_jump_forward_string() == ', "жok'
    assert m.find_jump_forward_bytes() == ', "жok'.encode()


def test_accept_string_is_one_rollback_step():
    m = gm.GrammarMatcher(compiled_expr())
    assert m.accept_string("(1+")
    assert not m.accept_string(")")
    assert m.accept_string("1)")
    m.rollback(1)
    assert m.accept_string("11)")
    assert m.accept_token(EOS)


def test_fill_returns_need_apply_and_checks_shape():
    g = Grammar({"s": plus(alt(*[lit(t) for t in VOCAB.decoded_vocab if t]))}, "s")
    c = gm.GrammarCompiler(VOCAB).compile_grammar(g)
    m = gm.GrammarMatcher(c)
    bm = gm.allocate_token_bitmask(2, VOCAB.vocab_size)
    assert m.fill_next_token_bitmask(bm, 1) is True  # eos and padding are not allowed
    with pytest.raises(ValueError):
        m.fill_next_token_bitmask(np.zeros((1, 1), dtype=np.int32))
    with pytest.raises(TypeError):
        m.fill_next_token_bitmask(np.zeros((1, 100), dtype=np.int64))


def test_deep_nesting_grows_buffers():
    m = gm.GrammarMatcher(compiled_expr())
    depth = 3000
    assert m.accept_string("(" * depth + "1")
    assert m.accept_string(")" * depth)
    assert m.accept_token(EOS)


def test_undefined_rule_and_empty_language_errors():
    with pytest.raises(gm.GrammarError, match="undefined rule 'nope'"):
        gm.GrammarCompiler(VOCAB).compile_grammar(Grammar({"s": ref("nope")}, "s"))
    with pytest.raises(gm.GrammarError, match="empty"):
        gm.GrammarCompiler(VOCAB).compile_grammar(
            Grammar({"s": seq(lit("a"), ref("s"))}, "s"))


def test_unproductive_alternatives_are_pruned_from_masks():
    # "x" can never finish, so "b" must not be allowed even though it starts "x"
    g = Grammar({"s": alt(lit("a"), ref("x")), "x": seq(lit("b"), ref("x"))}, "s")
    c = gm.GrammarCompiler(VOCAB).compile_grammar(g)
    m = gm.GrammarMatcher(c)
    assert tok("b") not in allowed_set(m, VOCAB)
    assert tok("a") in allowed_set(m, VOCAB)


def test_compiled_grammar_pickles_and_is_shared():
    import pickle

    c = compiled_expr()
    c2 = pickle.loads(pickle.dumps(c))
    m1, m2 = gm.GrammarMatcher(c), gm.GrammarMatcher(c2)
    assert m1.accept_string("(1") and m2.accept_string("(1")
    assert allowed_set(m1, VOCAB) == allowed_set(m2, VOCAB)


def test_apply_token_bitmask_numpy():
    vocab = 70
    bm = gm.allocate_token_bitmask(2, vocab)
    bm[0] = 0
    bm[0, 0] = 0b101
    bm[0, 2] = 1 << 3  # token 67
    logits = np.zeros((2, vocab), dtype=np.float32)
    gm.apply_token_bitmask_inplace(logits, bm)
    assert set(np.flatnonzero(np.isfinite(logits[0]))) == {0, 2, 67}
    assert np.isfinite(logits[1]).all()
    logits = np.zeros((3, vocab), dtype=np.float64)
    gm.apply_token_bitmask_inplace(logits, bm[:1], indices=[2])
    assert np.isfinite(logits[:2]).all()
    assert set(np.flatnonzero(np.isfinite(logits[2]))) == {0, 2, 67}


def test_apply_token_bitmask_torch():
    torch = pytest.importorskip("torch")
    bm = gm.allocate_token_bitmask(1, 40)
    bm[0, 0] = 0b11
    bm[0, 1] = 0
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        logits = torch.zeros(40, dtype=dtype)
        gm.apply_token_bitmask_inplace(logits, bm[0])
        assert torch.isfinite(logits).nonzero().flatten().tolist() == [0, 1]


@pytest.mark.parametrize("seed", [0, 1])
def test_rule_ending_through_a_nullable_call_mid_token(seed):
    # From the state after "(" (which calls a), "+" is a plain step of a's DFA (a cannot
    # begin with "+") into a state whose only way to the end of a is the nullable call of n:
    # a token "+)" ends a there, inside the token, and ")" follows a. The cache entry must
    # leave "+)" uncertain (then allowed), not reject it.
    grammar = Grammar({"root": seq(ref("a"), lit(")"), opt(ref("root"))),
                       "a": seq(lit("("), opt(ref("a")), lit("+"), ref("n")),  # not inlined
                       "n": opt(seq(lit("a"), ref("n"), lit("b")))}, "root")  # a^k b^k
    compiled = gm.GrammarCompiler(VOCAB).compile_grammar(grammar)
    m = gm.GrammarMatcher(compiled)
    assert m.accept_token(tok("("))
    assert tok("+)") in allowed_set(m, VOCAB)
    check_walk(grammar, VOCAB, 25, random.Random(seed))
