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
    monkeypatch.setattr(batch_mod, "MIN_ROWS_PARALLEL", 4)
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


def _expected(matchers):
    twins_mask = gm.allocate_token_bitmask(len(matchers), VOCAB.vocab_size)
    need = [m.fill_next_token_bitmask(twins_mask, i) for i, m in enumerate(matchers)]
    return twins_mask, need


def test_pool_with_sleeping_workers(monkeypatch):
    # workers that go to sleep at once: every fill wakes them, and the posting thread must
    # neither wait for a worker that has not woken nor lose the rows a late one takes
    monkeypatch.setattr(batch_mod, "SPIN_US", 0.0)
    pool = batch_mod._FillPool(2)
    try:
        matchers = _matchers()
        expected, need = _expected(matchers)
        table = np.frombuffer(b"".join(m._make_part() for m in matchers),
                              dtype=np.int64).reshape(len(matchers), -1)
        rows = np.arange(len(matchers), dtype=np.int64)
        for rep in range(30):
            got = gm.allocate_token_bitmask(len(matchers), VOCAB.vocab_size)
            status = np.empty(len(matchers), dtype=np.int32)
            unfilled = pool.fill(table, rows, got.ctypes.data, got.strides[0], got.shape[1],
                                 status)
            assert unfilled == 0
            assert [s == 1 for s in status.tolist()] == need
            np.testing.assert_array_equal(got, expected)
    finally:
        pool.stop()
    assert not any(t.is_alive() for t in pool._threads)


def test_concurrent_batches_share_the_pool(monkeypatch):
    # two threads filling at once: one gets the pool, the other fills on its own thread
    import threading

    monkeypatch.setattr(batch_mod, "MIN_ROWS_PARALLEL", 4)
    groups = [_matchers(), _matchers()]
    results = [None, None]

    def run(k):
        batch = gm.BatchGrammarMatcher(max_threads=2)
        out = []
        for _ in range(40):
            got = gm.allocate_token_bitmask(len(groups[k]), VOCAB.vocab_size)
            out.append((batch.batch_fill_next_token_bitmask(groups[k], got), got))
        results[k] = out

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(2):
        expected, need = _expected(_matchers())
        for flags, got in results[k]:
            assert flags == need
            np.testing.assert_array_equal(got, expected)


def test_batch_after_the_cache_arrays_grew(monkeypatch):
    # a matcher's batch row names the cache arrays of its first fill; other matchers of the
    # grammar then grow them (new entries): the stale row must not give a wrong mask
    monkeypatch.setattr(batch_mod, "MIN_ROWS_PARALLEL", 4)
    cg = gm.GrammarCompiler(VOCAB).compile_grammar(EXPR)
    matchers = [gm.GrammarMatcher(cg) for _ in range(8)]
    bm = gm.allocate_token_bitmask(len(matchers), VOCAB.vocab_size)
    gm.batch_fill_next_token_bitmask(matchers, bm, max_threads=2)
    old_pool = cg.mask_cache.pool
    explorer = gm.GrammarMatcher(cg)
    scratch = gm.allocate_token_bitmask(1, VOCAB.vocab_size)
    for text in ["(((1+1)+", "1+(1+(", "((((((1"]:
        explorer.reset()
        for ch in text:
            explorer.fill_next_token_bitmask(scratch)
            assert explorer.accept_string(ch)
    cg.mask_cache._append(np.zeros(2 * old_pool.shape[0], dtype=np.int32))  # force a regrow
    assert cg.mask_cache.pool is not old_pool
    for m, text in zip(matchers, ["(", "((", "1+", "(1+(", "((((", "1", "(1", ""]):
        assert m.accept_string(text)
    expected, need = _expected(matchers)
    for _ in range(2):  # the second fill uses the parts made anew
        bm[:] = 0
        assert gm.batch_fill_next_token_bitmask(matchers, bm, max_threads=2) == need
        np.testing.assert_array_equal(bm, expected)


def test_batch_bitmask_checks():
    matchers = _matchers()[:3]
    batch = gm.BatchGrammarMatcher(1)
    with pytest.raises(TypeError):
        batch.batch_fill_next_token_bitmask(matchers, np.zeros((3, 8), dtype=np.int64))
    with pytest.raises(ValueError):
        batch.batch_fill_next_token_bitmask(matchers, gm.allocate_token_bitmask(
            2, VOCAB.vocab_size))
    with pytest.raises(IndexError):
        batch.batch_fill_next_token_bitmask(matchers, gm.allocate_token_bitmask(
            3, VOCAB.vocab_size), [0, 1, 3])
    # too few words for the vocabulary: the row goes through the matcher, which says so
    with pytest.raises(ValueError, match="words"):
        batch.batch_fill_next_token_bitmask(matchers, np.zeros((3, 1), dtype=np.int32))
    # negative indices count from the end, as numpy's do
    expected, need = _expected(matchers)
    got = gm.allocate_token_bitmask(4, VOCAB.vocab_size)
    assert batch.batch_fill_next_token_bitmask(matchers, got, [-1, -2, -3]) == need
    np.testing.assert_array_equal(got[[3, 2, 1]], expected)
