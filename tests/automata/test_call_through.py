"""Entries built through a called rule's start state (mask cache "call-through") equal a full
walk, on the 129k deepseek vocabulary: bounded strings (counter blocks entered by a call),
values called from objects, chains of such calls."""

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
        through += sum(MC.call_through_target(g, s) >= 0 for s in states)
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
            "n": {"type": "integer", "minimum": 10},
        },
        "required": ["level", "subject"],
    }
    compiled = gm.GrammarCompiler(info).compile_json_schema(schema, any_whitespace=True)
    text = '{"level": "error", "subject": "Disk \\"sda\\" failing", "tags": ["ab", "c"]'
    assert _walk(info, hf, compiled, text, seed, 12) > 0


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
