"""The subtree memo of the mask cache (walks below a trie node entered in a loop state, kept
for later walks) changes no entry: masks with it equal masks without it and the uncached full
walk, on the 129k deepseek vocabulary, for the states that use it most: object keys beside
free keys (every key prefix enters the string loop), whitespace loops, enums of strings."""

from __future__ import annotations

import random

import numpy as np
import pytest

import grammask as gm
from grammask.automata.mask_cache import MaskCache
from grammask.mask_kernels import mask_cache as MC
from grammask.mask_kernels.bitmask import unpack_bitmask

from .test_real_tokenizers import deepseek  # noqa: F401  (fixture)

SCHEMAS = [
    # named keys and any other key: the key prefixes all enter the free string's loop
    {"type": "object", "properties": {k: {"type": "boolean"} for k in
                                      ["bitwise", "curly", "eqeqeq", "esversion", "forin",
                                       "freeze", "futurehostile", "globals", "latedef"]}},
    {"type": "object",
     "properties": {"name": {"type": "string"}, "names": {"type": "array",
                                                          "items": {"type": "string"}},
                    "id": {"type": "integer"}},
     "additionalProperties": {"type": "string", "pattern": "^[a-z ]+$"}},
    {"enum": ["alpha", "alphabet", "beta", "gamma delta", "\u00e9t\u00e9", "x" * 40]},
]


def _masks(info, hf, compiled, texts, seed, extra_steps, check_uncached):
    m = gm.GrammarMatcher(compiled)
    rng = random.Random(seed)
    bm = gm.allocate_token_bitmask(1, info.vocab_size)
    out = []
    for text in texts:
        m.reset()
        forced = hf.encode(text, add_special_tokens=False).ids
        for step in range(len(forced) + extra_steps):
            m.fill_next_token_bitmask(bm)
            out.append(bm[0].copy())
            if check_uncached:
                row = np.zeros_like(bm[0])
                m._fill_uncached(row)
                np.testing.assert_array_equal(bm[0], row, err_msg=f"{text!r} step {step}")
            allowed = [t for t in np.flatnonzero(unpack_bitmask(bm[0], info.vocab_size))
                       .tolist() if t not in info.stop_token_ids]
            if not allowed:
                break
            t = (forced[step] if step < len(forced) and forced[step] in allowed
                 else rng.choice(allowed))
            assert m.accept_token(t)
    return out


@pytest.mark.parametrize("k", range(len(SCHEMAS)))
def test_memo_changes_no_mask(deepseek, k, monkeypatch):  # noqa: F811
    info, hf = deepseek
    schema = SCHEMAS[k]
    texts = ['{"curly": true, "forin": false, "other key": true}',
             '{"names": ["a"], "id": 3, "zzz": "some words", "name": "x"}',
             '"gamma delta"']
    compiler = gm.GrammarCompiler(info, cache_enabled=False)
    with_memo = compiler.compile_json_schema(schema, any_whitespace=True, strict_mode=False)
    got = _masks(info, hf, with_memo, texts, k, 12, check_uncached=True)
    memo = with_memo.mask_cache._memo
    monkeypatch.setattr(MaskCache, "subtree_memo", False)
    plain = compiler.compile_json_schema(schema, any_whitespace=True, strict_mode=False)
    want = _masks(info, hf, plain, texts, k, 12, check_uncached=False)
    assert plain.mask_cache._memo is None
    assert len(got) == len(want)
    for step, (a, b) in enumerate(zip(got, want)):
        np.testing.assert_array_equal(a, b, err_msg=f"step {step}")
    if k == 0:  # the key states found subtrees kept by earlier walks
        assert memo is not None and memo[MC.MT_META][MC.MEMO_ENTRIES] > 0


def test_memo_grows(deepseek, monkeypatch):  # noqa: F811
    # a tiny table and pool: stores fail, the build grows them, later builds keep subtrees
    import grammask.automata.mask_cache as amc

    info, hf = deepseek
    monkeypatch.setattr(amc, "_MEMO_TABLE0", 4)
    monkeypatch.setattr(amc, "_MEMO_POOL0", 8)
    compiler = gm.GrammarCompiler(info, cache_enabled=False)
    cg = compiler.compile_json_schema(SCHEMAS[0], any_whitespace=True, strict_mode=False)
    _masks(info, hf, cg, ['{"bitwise": true, "curly": false, "globals": true}'], 0, 0,
           check_uncached=True)
    memo = cg.mask_cache._memo
    assert memo[MC.MT_TAB].shape[0] > 4 and memo[MC.MT_POOL].shape[0] > 8
    assert memo[MC.MT_META][MC.MEMO_ENTRIES] > 0


def test_string_loops_inside_big_loops_get_their_own_components(deepseek):  # noqa: F811
    """An array of objects is one big cycle through every value of the item object; its
    string values' loops are cut out as components of their own (so their walks are shared by
    shape), every component stays strongly connected, and the masks equal the uncached walk."""
    info, hf = deepseek
    item = {"type": "object", "properties": {k: {"type": "string"} for k in
                                             ["origin", "name", "version", "release"]},
            "required": ["origin", "name", "version", "release"],
            "additionalProperties": False}
    schema = {"type": "array", "items": item}
    compiler = gm.GrammarCompiler(info, cache_enabled=False)
    cg = compiler.compile_json_schema(schema, any_whitespace=True, strict_mode=False)
    g = cg.automata.blob
    comp, cyclic, has_calls = MC.scc_of_states(g)
    n, k = int(g[14]), int(g[1])
    trans = g[int(g[4]):int(g[4]) + n * k].reshape(n, k)
    sizes = np.bincount(comp)
    assert sizes.max() <= MC.SCC_MAX
    for c in np.flatnonzero(sizes > 1):
        members = set(np.flatnonzero(comp == c).tolist())
        start = min(members)
        seen, todo = {start}, [start]
        while todo:  # every member reaches every other (from the first, and back to it)
            for t in trans[todo.pop()].tolist():
                if t in members and t not in seen:
                    seen.add(t)
                    todo.append(t)
        assert seen == members and cyclic[c]
    # the four string values' loops: four components of one shape
    m = gm.GrammarMatcher(cg)
    states = []
    for text in ['[{"origin": "', 'core", "name": "', 'gcc", "version": "',
                 '5.3", "release": "']:
        assert m.accept_string(text)
        states.append(int(m._debug_state().split()[0].strip("(").split(",")[0]))
    loops = {int(comp[s]) for s in states}
    assert len(loops) == 4 and all(cyclic[c] and sizes[c] > 1 for c in loops)
    text = ('[{"origin": "core", "name": "gcc-libs", "version": "5.3.0", "release": "2017"}, '
            '{"origin": "extra", "name": "x", "version": "1", "release": "2"}]')
    _masks(info, hf, cg, [text], 0, 6, check_uncached=True)
