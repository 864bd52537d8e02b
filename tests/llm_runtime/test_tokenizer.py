"""Tokenizers built from GGUF metadata (the byte-level case is in test_golden.py)."""

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from grammask.errors import TokenizerError
from grammask.llm_runtime.tokenizer import (
    GGUFTokenizerInfo,
    render_chat,
    tokenizer_from_gguf_metadata,
)

CORPUS = (Path(__file__).resolve().parents[1] / "data" / "multilingual_corpus.txt").read_text(
    encoding="utf-8"
)


def _sentencepiece_metadata(model_file):
    """The metadata llama.cpp's converter writes for a SentencePiece model."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(model_file))
    n = sp.get_piece_size()
    types = [
        2
        if sp.is_unknown(i)
        else 3
        if sp.is_control(i)
        else 6
        if sp.is_byte(i)
        else 5
        if sp.is_unused(i)
        else 1
        for i in range(n)
    ]
    md = {
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": [sp.id_to_piece(i) for i in range(n)],
        "tokenizer.ggml.scores": np.array([sp.get_score(i) for i in range(n)], np.float32),
        "tokenizer.ggml.token_type": np.array(types, np.int32),
        "tokenizer.ggml.unknown_token_id": sp.unk_id(),
        "tokenizer.ggml.bos_token_id": sp.bos_id(),
        "tokenizer.ggml.eos_token_id": sp.eos_id(),
        "tokenizer.ggml.add_bos_token": True,
    }
    return sp, md


def test_sentencepiece_style_matches_sentencepiece():
    pytest.importorskip("sentencepiece")
    spec = importlib.util.find_spec("mistral_common")
    if spec is None:
        pytest.skip("mistral-common (ships SentencePiece models) not installed")
    model = os.path.join(os.path.dirname(spec.origin), "data", "tokenizer.model.v1")
    sp, md = _sentencepiece_metadata(model)
    tok = tokenizer_from_gguf_metadata(md)
    for line in CORPUS.splitlines(keepends=True):
        ids = tok.encode(line, add_special_tokens=False).ids
        assert ids == sp.encode(line), line
        assert tok.decode(ids) == sp.decode(ids)
    info = GGUFTokenizerInfo.from_metadata(md)
    assert info.add_bos and info.bos_id == sp.bos_id() and info.eot_ids == (sp.eos_id(),)


def test_unsupported_or_missing_vocabulary():
    with pytest.raises(TokenizerError, match="unsupported tokenizer.ggml.model 'rwkv'"):
        tokenizer_from_gguf_metadata({"tokenizer.ggml.model": "rwkv", "tokenizer.ggml.tokens": []})
    with pytest.raises(TokenizerError, match="no tokenizer.ggml.tokens"):
        tokenizer_from_gguf_metadata({"tokenizer.ggml.model": "gpt2"})
    with pytest.raises(TokenizerError, match="merges"):
        tokenizer_from_gguf_metadata(
            {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": ["a"]}
        )


def test_chat_template_rendering():
    template = (
        "{% for m in messages %}{{ bos_token }}[{{ m['role'] }}] {{ m['content'] }}\n"
        "{% endfor %}{% if add_generation_prompt %}[assistant] {% endif %}"
    )
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    out = render_chat(template, msgs, bos_token="<s>")
    assert out == "<s>[system] Be brief.\n<s>[user] Hi\n[assistant] "
    assert render_chat(None, msgs[1:]) == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    with pytest.raises(TokenizerError, match=r"messages\[0\]"):
        render_chat(template, [{"content": "no role"}])
    bad = "{{ raise_exception('only user and assistant roles') }}"
    with pytest.raises(TokenizerError, match="only user and assistant"):
        render_chat(bad, msgs)
    with pytest.raises(TokenizerError, match="chat template failed"):
        render_chat("{% for %}", msgs)
