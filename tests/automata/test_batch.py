"""BatchGrammarMatcher: batch fills equal one-by-one fills, on several threads."""

from __future__ import annotations

import numpy as np
import pytest

import grammask as gm
import grammask.automata.batch as batch_mod
from grammask.grammar.ir import Grammar, alt, chars, lit, plus, ref, seq, star

from .test_matcher import EXPR, VOCAB, tok


def _matchers():
    c1 = gm.GrammarCompiler(VOCAB).compile_grammar(EXPR)
    c2 = gm.GrammarCompiler(VOCAB).compile_grammar(
        Grammar({"s": seq(star(chars("ab")), lit("("), plus(alt(lit("1"), ref("s"))), lit(")"))},
                "s"))
    out = []
    for i in range(24):
        m = gm.GrammarMatcher(c1 if i % 2 else c2)
        prefix = ["(", "(1", "1+", "ab(", "a", ""][i % 6]
        m.accept_string(prefix)  # may fail for one grammar: then the state stays initial
        out.append(m)
    return out


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_batch_fill_equals_single_fills(threads, monkeypatch):
    # small slices, so that a batch of 24 is split between the threads
    monkeypatch.setattr(batch_mod, "MIN_ROWS_PER_THREAD", 4)
    twins = _matchers()
    expected = gm.allocate_token_bitmask(len(twins), VOCAB.vocab_size)
    need = [m.fill_next_token_bitmask(expected, i) for i, m in enumerate(twins)]
    # fresh grammars: the batch meets states without cache entries (built in Python), and a
    # terminated matcher (filled in Python)
    matchers = _matchers()
    for m in (twins[5], matchers[5]):  # grammar EXPR, nothing accepted yet
        assert m.accept_string("1") and m.accept_token(VOCAB.stop_token_ids[0])
    need[5] = twins[5].fill_next_token_bitmask(expected, 5)
    got = gm.allocate_token_bitmask(len(matchers), VOCAB.vocab_size)
    batch = gm.BatchGrammarMatcher(max_threads=threads)
    assert batch.batch_fill_next_token_bitmask(matchers, got) == need
    np.testing.assert_array_equal(got, expected)
    # rows chosen by indices, in reverse; a second fill reuses the address table rows
    got2 = gm.allocate_token_bitmask(len(matchers) + 2, VOCAB.vocab_size)
    idx = list(range(len(matchers) + 1, 1, -1))
    for _ in range(2):
        got2[:] = 0
        gm.batch_fill_next_token_bitmask(matchers, got2, idx, max_threads=threads)
        for i, r in enumerate(idx):
            np.testing.assert_array_equal(got2[r], expected[i])
    # after tokens are accepted (buffers may grow), the batch follows the new states
    for m, t in zip(matchers + twins, [tok("1")] * (2 * len(matchers))):
        if not m.is_terminated():
            m.accept_token(t)
    expected[:] = 0
    need = [m.fill_next_token_bitmask(expected, i) for i, m in enumerate(twins)]
    assert batch.batch_fill_next_token_bitmask(matchers, got) == need
    np.testing.assert_array_equal(got, expected)
    batch.close()


def test_batch_accept_and_errors():
    matchers = _matchers()[:4]
    twins = _matchers()[:4]
    toks = [tok("1"), tok("1"), tok("("), tok(")")]
    want = [m.accept_token(t) for m, t in zip(twins, toks)]
    assert gm.BatchGrammarMatcher.batch_accept_token(matchers, toks) == want
    assert True in want and False in want
    strings = ["(", "1)", "ab", "+"]
    want = [m.accept_string(s) for m, s in zip(twins, strings)]
    assert gm.BatchGrammarMatcher.batch_accept_string(matchers, strings) == want
    with pytest.raises(ValueError):
        gm.BatchGrammarMatcher.batch_accept_token(matchers, toks[:2])
    with pytest.raises(ValueError):
        gm.BatchGrammarMatcher(2).batch_fill_next_token_bitmask(
            matchers, gm.allocate_token_bitmask(4, VOCAB.vocab_size), [0, 0, 1, 2])
