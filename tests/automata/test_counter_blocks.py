"""Counter blocks: large repetitions of prefix-free items are counters, not unrolled states."""

from __future__ import annotations

import random
import time

import pytest

import grammask as gm
import grammask.automata.counter_blocks as CB
from grammask.grammar.ir import Grammar, alt, char_ranges, chars, lit, opt, ref, rep, seq
from grammask.mask_kernels import earley as E

from .test_matcher import EOS, VOCAB, walk_checked


def _blocks(compiled) -> tuple[int, int]:
    g = compiled.automata.blob
    return int(g[E.H_NBLOCKS]), int(g[E.H_NSTATES] - g[E.H_NDENSE])


@pytest.mark.parametrize("lo,hi", [(3, 40), (0, 9), (5, None), (12, 12)])
def test_block_masks_equal_brute_force_and_oracle(monkeypatch, lo, hi):
    # small thresholds so that a small grammar (checkable by brute force) uses a block
    monkeypatch.setattr(CB, "MIN_BOUND", 4)
    monkeypatch.setattr(CB, "MIN_UNROLLED_STATES", 8)
    item = alt(chars("ab"), char_ranges([(0x400, 0x4FF)]), seq(lit("1"), chars("ab")))
    g = Grammar({"s": seq(lit("("), rep(item, lo, hi), lit(")"), opt(lit("1")))}, "s")
    compiled = gm.GrammarCompiler(VOCAB).compile_grammar(g)
    assert _blocks(compiled)[0] == 1
    rng = random.Random(lo)
    for _ in range(12):
        walk_checked(gm.GrammarMatcher(compiled), g, VOCAB, 22, rng)


def test_huge_bounds_compile_small_and_fast():
    big = Grammar({"s": seq(lit('"'), rep(char_ranges([(0x20, 0x21), (0x23, 0x10FFFF)]), 10, 100_000),
                            lit('"'))}, "s")
    t0 = time.perf_counter()
    compiled = gm.GrammarCompiler(VOCAB).compile_grammar(big)
    assert time.perf_counter() - t0 < 5
    n_blocks, n_virtual = _blocks(compiled)
    assert n_blocks == 1 and n_virtual > 100_000
    assert compiled.automata.n_states < 50  # the table itself stays tiny
    m = gm.GrammarMatcher(compiled)
    assert m.accept_string('"' + "ab" * 4)
    assert not m.accept_string('"')  # 8 characters: under the minimum of 10
    assert m.accept_string("abж")
    assert m.accept_string('"') and m.accept_token(EOS)
    m2 = gm.GrammarMatcher(compiled)
    assert m2.accept_string('"' + "a" * 100_000)
    assert not m2.accept_string("a")  # past the maximum
    assert m2.accept_string('"')


def test_non_prefix_free_items_stay_unrolled(monkeypatch):
    monkeypatch.setattr(CB, "MIN_BOUND", 4)
    monkeypatch.setattr(CB, "MIN_UNROLLED_STATES", 8)
    g = Grammar({"s": rep(alt(lit("a"), lit("ab")), 0, 30)}, "s")
    compiled = gm.GrammarCompiler(VOCAB).compile_grammar(g)
    assert _blocks(compiled)[0] == 0
    m = gm.GrammarMatcher(compiled)
    assert m.accept_string("abaab" * 3) and m.accept_token(EOS)


def test_item_dfas_are_shared_by_item_and_by_the_rules_it_reaches():
    """The item DFA cache keys on the item and the bodies of the rules it refers to: two
    grammars whose item names a rule ``c`` with different bodies get their own blocks."""
    def grammar(body):
        return Grammar({"s": seq(lit("["), rep(ref("c"), 300, 400), lit("]")), "c": body}, "s")

    compiler = gm.GrammarCompiler(VOCAB, cache_enabled=False)
    first = compiler.compile_grammar(grammar(chars("a")))
    second = compiler.compile_grammar(grammar(alt(lit("b"), lit("(1"))))
    assert _blocks(first)[0] == 1 and _blocks(second)[0] == 1
    m1, m2 = gm.GrammarMatcher(first), gm.GrammarMatcher(second)
    assert m1.accept_string("[" + "a" * 300)
    assert not m1.accept_string("b")
    assert m2.accept_string("[" + "b(1" * 150)
    assert not m2.accept_string("a")
    assert m2.accept_string("b" * 100 + "]") and m2.accept_token(EOS)


def test_virtual_entries_grow_their_rows_only(monkeypatch):
    """Entries of virtual (counter block) states take rows after the dense states'; when they
    run out, only that part doubles, and the entries built before stay valid."""
    import grammask.automata.mask_cache as amc

    monkeypatch.setattr(CB, "MIN_BOUND", 4)
    monkeypatch.setattr(CB, "MIN_UNROLLED_STATES", 8)
    monkeypatch.setattr(amc, "_VIRTUAL_ROWS0", 1)
    item = alt(chars("ab"), seq(lit("1"), chars("ab")))
    g = Grammar({"s": seq(lit("("), rep(item, 3, 30), lit(")"))}, "s")
    compiled = gm.GrammarCompiler(VOCAB, cache_enabled=False).compile_grammar(g)
    cache = compiled.mask_cache
    n_dense = int(compiled.automata.blob[E.H_NDENSE])
    assert cache.cmeta.shape[0] == n_dense + 1
    rng = random.Random(7)
    for _ in range(6):
        walk_checked(gm.GrammarMatcher(compiled), g, VOCAB, 30, rng, oracle=False)
    virtual = cache.cmeta.shape[0] - n_dense
    assert cache._rows - n_dense > 1 and virtual >= cache._rows - n_dense
    assert virtual & (virtual - 1) == 0  # 1, 2, 4...: the virtual part doubled
