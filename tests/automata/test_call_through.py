"""Entries built through a called rule's start state (mask cache "call-through") equal a full
walk, on the 129k deepseek vocabulary: bounded strings (counter blocks entered by a call,
nullable or not), values called from objects, chains of such calls."""

from __future__ import annotations

import random

import numpy as np
import pytest

import grammask as gm
from grammask.grammar.ir import Grammar, alt, chars, lit, plus, ref, rep, seq
from grammask.mask_kernels import mask_cache as MC
from grammask.mask_kernels import matcher_kernels as MK
from grammask.mask_kernels.bitmask import unpack_bitmask

from .test_real_tokenizers import deepseek  # noqa: F401  (fixture)


def _walk(info, hf, compiled, text: str, seed: int, extra_steps: int) -> int:
    """Follows ``text``'s tokens, then random allowed tokens; at every step the cached mask
    must equal the uncached full walk. Returns how many visited states were call-through."""
    m = gm.GrammarMatcher(compiled)
    rng = random.Random(seed)
    bm = gm.allocate_token_bitmask(1, info.vocab_size)
    forced = hf.encode(text, add_special_tokens=False).ids
    g = compiled.automata.blob
    through = 0
    for step in range(len(forced) + extra_steps):
        m.fill_next_token_bitmask(bm)
        cached = unpack_bitmask(bm[0], info.vocab_size)
        row = np.zeros_like(bm[0])
        m._fill_uncached(row)
        np.testing.assert_array_equal(cached, unpack_bitmask(row, info.vocab_size),
                                      err_msg=f"step {step}")
        items, sets, _ = MK.views(m._buf, m._meta)
        k = int(m._meta[0]) - 1
        states = items[sets[k]:sets[k + 1], 0].tolist()
        through += sum(MC.call_through_rule(g, s) >= 0 for s in states)
        choices = [t for t in np.flatnonzero(cached).tolist() if t not in info.stop_token_ids]
        if not choices:
            break
        t = forced[step] if step < len(forced) and forced[step] in choices else rng.choice(choices)
        assert m.accept_token(t)
    return through


@pytest.mark.parametrize("seed", [0, 1])
def test_bounded_strings_and_called_values(deepseek, seed):  # noqa: F811
    info, hf = deepseek
    schema = {
        "type": "object",
        "properties": {
            "level": {"enum": ["info", "error"]},
            "subject": {"type": "string", "minLength": 1, "maxLength": 40},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 3},
                     "maxItems": 3},
            "note": {"type": "string", "maxLength": 300},
            "n": {"type": "integer", "minimum": 10},
        },
        "required": ["level", "subject"],
    }
    compiled = gm.GrammarCompiler(info).compile_json_schema(schema, any_whitespace=True)
    text = ('{"level": "error", "subject": "Disk \\"sda\\" failing", "tags": ["ab", "", "c"], '
            '"note": ""')
    assert _walk(info, hf, compiled, text, seed, 12) > 0


def test_every_prefix(deepseek):  # noqa: F811
    """Masks after every prefix of a text (not only at token boundaries: a state right after
    an opening quote is reached by tokens ending there)."""
    info, _ = deepseek
    schema = {
        "type": "object",
        "properties": {
            "subject": {"type": "string", "minLength": 2, "maxLength": 40},
            "note": {"type": "string", "maxLength": 300},
            "more": {"type": "array", "items": {"type": "string", "maxLength": 50}},
        },
    }
    compiled = gm.GrammarCompiler(info).compile_json_schema(schema, any_whitespace=False)
    text = '{"subject": "ab", "note": "", "more": ["x", ""]}'  # the default separators
    bm = gm.allocate_token_bitmask(1, info.vocab_size)
    g = compiled.automata.blob
    through = 0
    for end in range(len(text) + 1):
        m = gm.GrammarMatcher(compiled)
        assert m.accept_string(text[:end])
        m.fill_next_token_bitmask(bm)
        row = np.zeros_like(bm[0])
        m._fill_uncached(row)
        np.testing.assert_array_equal(unpack_bitmask(bm[0], info.vocab_size),
                                      unpack_bitmask(row, info.vocab_size),
                                      err_msg=f"after {text[:end]!r}")
        items, sets, _ = MK.views(m._buf, m._meta)
        k = int(m._meta[0]) - 1
        through += sum(MC.call_through_rule(g, s) >= 0
                       for s in items[sets[k]:sets[k + 1], 0].tolist())
    assert through >= 3


def test_chain_of_calls(deepseek):  # noqa: F811
    # a -> b -> c: each state before a call has that call as its only edge
    info, hf = deepseek
    word = plus(chars("a-z"))
    grammar = Grammar({
        "s": seq(lit("("), ref("a"), lit(")"), rep(seq(lit(","), ref("a")), 0, 2)),
        "a": alt(ref("b"), seq(lit("<"), ref("a"), lit(">"))),
        "b": seq(ref("c"), lit("!")),
        "c": seq(word, rep(seq(lit(" "), word), 0, 40)),
    }, "s")
    compiled = gm.GrammarCompiler(info).compile_grammar(grammar)
    _walk(info, hf, compiled, "(<<ab cd!>>),x!", 3, 6)


def test_entries_equal_full_walks(deepseek):  # noqa: F811
    """Every call-through entry of a grammar, compared as an entry (accepted set and uncertain
    tokens) with the full-vocabulary walk from the same state: in the matcher other items of
    the Earley set can hide a missing token, here nothing does."""
    from grammask.automata.mask_cache import _new_scratch
    from grammask.mask_kernels import earley as E

    info, _ = deepseek
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "string", "minLength": 1, "maxLength": 60},
            "b": {"type": "string", "maxLength": 300},
            "c": {"type": "array", "items": {"anyOf": [{"type": "string", "maxLength": 40},
                                                        {"type": "integer"}]}},
            "d": {"type": "object", "additionalProperties": {"type": "number"}},
        },
        "required": ["a"],
    }
    compiled = gm.GrammarCompiler(info).compile_json_schema(schema, any_whitespace=True)
    cache = compiled.mask_cache
    g = compiled.automata.blob
    trie = compiled.token_trie
    words = (info.vocab_size + 31) // 32
    checked = nullable = 0
    for s in range(int(g[E.H_NDENSE])):
        r = int(MC.call_through_rule(g, s))
        if r < 0:
            continue
        cache.ensure(s)
        got = np.zeros(words, dtype=np.int32)
        MC._write_accepted(cache.cmeta, cache.pool, cache.universe, s, got)
        off, n = int(cache.cmeta[s, MC.C_UNC_OFF]), int(cache.cmeta[s, MC.C_UNC_LEN])
        got_unc = sorted(set(cache.pool[off:off + n].tolist()))

        items, sets, htab, meta = _new_scratch()
        want = np.zeros(words, dtype=np.int32)
        unc = np.zeros(len(trie.sorted_ids), dtype=np.int32)
        follow = cache._follow_of(int(E.state_rule(g, s)))
        lengths = np.diff(trie.tok_ptr)
        n_unc = MC.build_cache(g, s, items, sets, htab, meta, trie.tok_bytes, trie.tok_ptr,
                               trie.sorted_ids, trie.lcp, trie.skip, follow, want, unc,
                               int(lengths.max()), 0, *MC.no_memo())
        assert n_unc >= 0
        np.testing.assert_array_equal(got, want, err_msg=f"accepted set of state {s}")
        assert got_unc == sorted(set(unc[:n_unc].tolist())), f"uncertain tokens of state {s}"
        checked += 1
        nullable += int(g[int(g[E.H_NULLABLE]) + r] != 0)
    assert checked >= 3 and nullable >= 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_run_states_take_the_entry_after_the_run(deepseek, seed):  # noqa: F811
    """Whitespace runs are virtual states whose entries are the entry of the state after the
    run plus a walk of the tokens that start with whitespace: equal to the full walk at every
    step of a text full of whitespace (newlines, indentation, spaces before colons and commas,
    20 spaces: the bound) and of random continuations."""
    info, hf = deepseek
    schema = {"type": "object",
              "properties": {"a": {"type": "array", "items": {"type": "integer"}},
                             "b": {"type": "string"}, "c": {"type": "object"}},
              "required": ["a"]}
    compiled = gm.GrammarCompiler(info).compile_json_schema(schema, any_whitespace=True)
    text = ('{\n    "a" : [ 1 ,\n\t2,' + " " * 20 + '3 ] ,\r\n  "b":"x y" ,  "c" : {\n  "k" :'
            ' [ ]  }')
    _walk(info, hf, compiled, text, seed, 20)
