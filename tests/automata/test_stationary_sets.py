"""Stationary Earley sets in the mask cache walk (a byte that leaves the parse as it was builds
no set) change no mask: cached masks equal the uncached full walk, on the 129k deepseek
vocabulary, for grammars whose called rules loop on bytes where they may end (identifiers,
numbers) and for grammars where a set that looks alike must not be taken for the one before
(each byte predicts the rule again, so the origins move)."""

from __future__ import annotations

import numpy as np
import pytest

import grammask as gm
from grammask.mask_kernels import mask_cache as MC
from grammask.mask_kernels.bitmask import unpack_bitmask

from .test_real_tokenizers import deepseek  # noqa: F401  (fixture)
from .test_subtree_memo import _masks

ARITHMETIC = r"""
?start: sum
?sum: product | sum "+" product | sum "-" product
?product: atom | product "*" atom | product "/" atom
?atom: NUMBER | "-" atom | NAME | "(" sum ")"
%import common.CNAME -> NAME
%import common.NUMBER
%import common.WS_INLINE
%ignore WS_INLINE
"""

STATEMENTS = r"""
start: stmt+
stmt: "let" NAME "=" value ";" | NAME "(" [value ("," value)*] ")" ";"
value: NAME | NUMBER | "[" [value ("," value)*] "]"
NAME: /[a-z_][a-z0-9_]*/
NUMBER: /[0-9]+/
%ignore " "
"""

# right recursion: every "x" predicts the rule again in a new set
COUNTING = r"""
start: a
a: "x" a | "x" "!" | NAME
NAME: /[a-w]+/
"""

# balanced parentheses around a name: the sets under the name repeat, those under "(" don't
NESTED = r"""
start: "(" start ")" | NAME | NAME "." start
NAME: /[a-zA-Z]+/
"""

CASES = [
    (ARITHMETIC, ["(x1 + 42) * -y / 3.5 - (a*b + c)", "alpha_beta*gamma2 - 1e10"]),
    (STATEMENTS, ["let counter = [1, 22, name];", "print(counter, other_name);"]),
    (COUNTING, ["xxxx!", "xxabc"]),
    (NESTED, ["((abc.def))", "(Hello.(World))"]),
]


@pytest.mark.parametrize("k", range(len(CASES)))
def test_cached_masks_equal_the_full_walk(deepseek, k):  # noqa: F811
    info, hf = deepseek
    text, samples = CASES[k]
    compiled = gm.GrammarCompiler(info, cache_enabled=False).compile_grammar(text)
    _masks(info, hf, compiled, samples, seed=k, extra_steps=10, check_uncached=True)


DYCK = r"""
start: item* "!"
item: "(" item* ")" | "[" item* "]" | NAME
NAME: /[a-z]+/
"""


def _dyck_vocab():
    words = ["(", ")", "[", "]", "!", "a", "ab", "((", "))", "(()", "())", "(())", "((()",
             "(()))", "()()", "[[", "]]", "[(", ")]", "([", "])", "(a)", "((a", "a))", "a)",
             "(ab(", "b)b)", ")(", "]!", ")!", "a!", "[[[", "]]]"]
    return gm.TokenizerInfo(["</s>"] + words, gm.VocabType.RAW, stop_token_ids=[0])


@pytest.mark.parametrize("seed", range(6))
def test_nesting_is_kept_on_a_small_vocabulary(seed):
    """Sets after an opening bracket look like the set before it but for the origins (one
    level deeper): cached masks equal the uncached walk along random nested inputs, where
    tokens open and close several levels at once."""
    info = _dyck_vocab()
    compiled = gm.GrammarCompiler(info, cache_enabled=False).compile_grammar(DYCK)
    rng = np.random.default_rng(seed)
    m = gm.GrammarMatcher(compiled)
    bm = gm.allocate_token_bitmask(1, info.vocab_size)
    row = np.zeros_like(bm[0])
    for step in range(120):
        m.fill_next_token_bitmask(bm)
        row[:] = 0
        m._fill_uncached(row)
        np.testing.assert_array_equal(bm[0], row, err_msg=f"step {step}")
        allowed = [t for t in np.flatnonzero(unpack_bitmask(bm[0], info.vocab_size)).tolist()
                   if t != 0]
        if not allowed:
            break
        # prefer opening tokens early, so the nesting gets deep
        opening = [t for t in allowed if info.decoded_vocab[t].count(b"(")
                   + info.decoded_vocab[t].count(b"[") > 1]
        pool = opening if opening and step < 40 and rng.random() < 0.6 else allowed
        assert m.accept_token(int(rng.choice(pool)))


SIBLINGS = r"""
start: "a" n | "b" w "!"
n: /[0-9]+/ | "(" n ")"
w: /[a-z]+/ | "<" w ">"
"""


def test_a_rebuilt_set_forgets_what_kept_the_old_one():
    """The set after "a1" stays under more digits; the set after "bx", built later at the same
    place, must not: "bx1" is rejected, "bxy!" accepted."""
    words = ["a", "b", "a12", "a123", "bx1", "bxy", "bxy!", "bx", "!", "1", "x", "(", ")"]
    info = gm.TokenizerInfo(["</s>"] + words, gm.VocabType.RAW, stop_token_ids=[0])
    compiled = gm.GrammarCompiler(info, cache_enabled=False).compile_grammar(SIBLINGS)
    m = gm.GrammarMatcher(compiled)
    bm = gm.allocate_token_bitmask(1, info.vocab_size)
    m.fill_next_token_bitmask(bm)
    allowed = {info.decoded_vocab[t].decode()
               for t in np.flatnonzero(unpack_bitmask(bm[0], info.vocab_size))}
    assert allowed == {"a", "b", "a12", "a123", "bxy", "bxy!", "bx"}
    row = np.zeros_like(bm[0])
    m._fill_uncached(row)
    np.testing.assert_array_equal(bm[0], row)


def _small_vocab():
    words = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789+-*/(). _eE")
    words += ["alpha", "alphabet", "x1", "abc", "12", "3.5", "e10", "_a", " (", ") ", "x+",
              "name_2", "99", "1.", "a*b", "ab(", " y", "zz z", "(-", "--", "1e", "E5"]
    return gm.TokenizerInfo(["</s>"] + words, gm.VocabType.RAW, stop_token_ids=[0])


def test_stationary_sets_are_taken(monkeypatch):
    """The identifier and number loops of the arithmetic grammar are walked with stationary
    sets, and every mask along a text is the same with them turned off (walked in Python, on
    a small vocabulary, with the comparison counted)."""
    info = _small_vocab()
    found = []
    real = MC._same_as_previous.py_func
    monkeypatch.setattr(MC, "walk_range", MC.walk_range.py_func)
    monkeypatch.setattr(MC, "build_cache", MC.build_cache.py_func)
    monkeypatch.setattr(MC, "build_through", MC.build_through.py_func)
    text = [" (", "x1", "+", "12", ") ", "*", "alphabet", "-", "3.5", "e10"]
    masks = {}
    for mode in ("on", "off"):
        def same(items, sets, meta, mode=mode):
            r = real(items, sets, meta)
            found.append(r)
            return r and mode == "on"

        monkeypatch.setattr(MC, "_same_as_previous", same)
        compiled = gm.GrammarCompiler(info, cache_enabled=False).compile_grammar(ARITHMETIC)
        m = gm.GrammarMatcher(compiled)
        bm = gm.allocate_token_bitmask(1, info.vocab_size)
        out = []
        for w in text:
            m.fill_next_token_bitmask(bm)
            out.append(bm[0].copy())
            assert m.accept_token(_token_id(info, w)), w
        m.fill_next_token_bitmask(bm)
        out.append(bm[0].copy())
        masks[mode] = out
        if mode == "on":
            assert any(found), "no stationary set under the identifier loop"
    for k, (a, b) in enumerate(zip(masks["on"], masks["off"])):
        np.testing.assert_array_equal(a, b, err_msg=f"step {k}")


def _token_id(info, word: str) -> int:
    return info.decoded_vocab.index(word.encode())


def test_two_items_read_as_one_are_not_the_earlier_set():
    """(s, k) and (s, k+1) in the last set both read as (s, k): with (s, k) and another item
    in the earlier set the sizes agree, but the sets differ."""
    from grammask.mask_kernels.earley import M_NITEMS, M_NSETS

    def last_equals_previous(prev, last):
        items = np.array([(s, o, -1) for s, o in [(0, 0)] + prev + last], dtype=np.int32)
        sets = np.array([0, 1, 1 + len(prev), 1 + len(prev) + len(last)], dtype=np.int32)
        meta = np.zeros(4, dtype=np.int64)
        meta[M_NSETS] = 3
        meta[M_NITEMS] = len(items)
        return bool(MC._same_as_previous(items, sets, meta))

    # sets: 0 (one item), 1 = prev, 2 = last
    assert last_equals_previous([(5, 1), (7, 0)], [(5, 2), (7, 0)])  # predicted: 2 read as 1
    assert last_equals_previous([(5, 1), (7, 0)], [(7, 0), (5, 1)])  # a scanned item of set 1
    assert not last_equals_previous([(5, 1), (7, 0)], [(5, 1), (5, 2)])
    assert not last_equals_previous([(5, 1), (7, 0)], [(5, 2), (7, 1)])
