"""TokenizerInfo.from_huggingface on small tokenizers built in the test: vocab type detection
from the pipeline, added tokens, the verification against decode, and the slow path."""

from __future__ import annotations

import pytest

tokenizers = pytest.importorskip("tokenizers")
from tokenizers import decoders, models, normalizers, pre_tokenizers

from grammask import TokenizerError, TokenizerInfo, VocabType
from grammask.automata.tokenizer_info import encode_byte_level


def _bpe(vocab: list[str], **kw) -> tokenizers.Tokenizer:
    return tokenizers.Tokenizer(models.BPE({t: i for i, t in enumerate(vocab)}, [], **kw))


def _byte_level_tokenizer() -> tokenizers.Tokenizer:
    vocab = [encode_byte_level(bytes([b])) for b in range(256)]
    vocab += ["Ġhello", "Ġw", "orld", "âĤ¬", "ðŁ"]
    tok = _bpe(vocab)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<|endoftext|>", "<|im_start|>"])
    tok.add_tokens(["<tool_call>", " spaced added"])
    return tok


def test_byte_level_detection_and_added_tokens():
    tok = _byte_level_tokenizer()
    info = TokenizerInfo.from_huggingface(tok)
    assert info.vocab_type is VocabType.BYTE_LEVEL and not info.add_prefix_space
    assert info.decoded_vocab[256:261] == (b" hello", b" w", b"orld", "€".encode(), b"\xf0\x9f")
    eot, im_start = tok.token_to_id("<|endoftext|>"), tok.token_to_id("<|im_start|>")
    assert info.stop_token_ids == [eot]
    assert {eot, im_start} <= set(info.special_token_ids)
    # added tokens that are not special are text the model writes, bytes from decode
    tool = tok.token_to_id("<tool_call>")
    spaced = tok.token_to_id(" spaced added")
    assert info.decoded_vocab[tool] == b"<tool_call>"
    assert info.decoded_vocab[spaced] == tok.decode([spaced]).encode()
    assert tool not in info.special_token_ids


def test_byte_level_prefix_space_and_padding():
    tok = _byte_level_tokenizer()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    info = TokenizerInfo.from_huggingface(tok, vocab_size=300)
    assert info.add_prefix_space and info.vocab_size == 300
    n = tok.get_vocab_size()
    assert info.decoded_vocab[n:] == (b"",) * (300 - n)


def test_vocab_size_may_cut_only_special_ids():
    tok = _byte_level_tokenizer()
    n = tok.get_vocab_size()
    with pytest.raises(TokenizerError, match="would cut off regular token"):
        TokenizerInfo.from_huggingface(tok, vocab_size=n - 1)  # " spaced added" is regular
    tok2 = _bpe(["a", "b"])
    tok2.decoder = decoders.ByteLevel()
    tok2.add_special_tokens(["<|endoftext|>", "<pad>"])
    info = TokenizerInfo.from_huggingface(tok2, vocab_size=3)
    assert info.vocab_size == 3 and info.stop_token_ids == [2]


def _sentencepiece_style(decoder) -> tokenizers.Tokenizer:
    vocab = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    vocab += ["▁", "▁hello", "▁world", "a", "b", "ab", "▁a"]
    tok = _bpe(vocab, byte_fallback=True, unk_token="<unk>", fuse_unk=True)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoder
    tok.add_special_tokens(["<unk>", "<s>", "</s>"])
    return tok


LLAMA_DECODER = decoders.Sequence([
    decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)
])


@pytest.mark.parametrize("decoder", [LLAMA_DECODER, decoders.Metaspace(prepend_scheme="first")],
                         ids=["replace-bytefallback-strip", "metaspace"])
def test_byte_fallback_detection(decoder):
    if not isinstance(decoder, decoders.Sequence):
        decoder = decoders.Sequence([decoders.ByteFallback(), decoder])
    tok = _sentencepiece_style(decoder)
    info = TokenizerInfo.from_huggingface(tok)
    assert info.vocab_type is VocabType.BYTE_FALLBACK
    assert info.add_prefix_space
    assert info.decoded_vocab[3 + 0x0A] == b"\n" and info.decoded_vocab[3 + 0xE2] == b"\xe2"
    assert info.decoded_vocab[259:262] == (b" ", b" hello", b" world")
    assert info.special_token_ids == [0, 1, 2] and info.stop_token_ids == [2]


def test_prepend_normalizer_means_prefix_space():
    tok = _sentencepiece_style(LLAMA_DECODER)
    tok.pre_tokenizer = None
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    assert TokenizerInfo.from_huggingface(tok).add_prefix_space


def test_unsupported_decoder_is_refused():
    tok = tokenizers.Tokenizer(models.WordPiece({"[UNK]": 0, "he": 1, "##llo": 2}, unk_token="[UNK]"))
    tok.decoder = decoders.WordPiece()
    with pytest.raises(TokenizerError, match="WordPiece decoder"):
        TokenizerInfo.from_huggingface(tok)


def test_disagreement_with_decode_names_the_token():
    tok = _bpe(["a", "b", "Ġc", "d"])
    tok.decoder = decoders.Replace("Ġ", "_")  # not a byte-level decoder: RAW, and "Ġc" != "_c"
    with pytest.raises(TokenizerError, match=r"token 2 \('Ġc'\).*RAW.*'_c'"):
        TokenizerInfo.from_huggingface(tok)


def test_stop_detection_looks_at_added_tokens_only():
    vocab = [encode_byte_level(bytes([b])) for b in range(256)] + ["</s>"]  # text, not control
    tok = _bpe(vocab)
    tok.decoder = decoders.ByteLevel()
    tok.add_tokens(["<|im_end|>"])  # added, not special: still an end token
    info = TokenizerInfo.from_huggingface(tok)
    assert info.stop_token_ids == [tok.token_to_id("<|im_end|>")]
    assert info.decoded_vocab[256] == b"</s>"


def test_stop_token_ids_override():
    tok = _byte_level_tokenizer()
    info = TokenizerInfo.from_huggingface(tok, stop_token_ids=[5])
    assert info.stop_token_ids == [5] and info.decoded_vocab[5] == b""


def test_no_stop_token_warns():
    tok = _bpe(["a", "b"])
    tok.decoder = decoders.ByteLevel()
    with pytest.warns(UserWarning, match="no stop token"):
        info = TokenizerInfo.from_huggingface(tok)
    assert info.stop_token_ids == []


def test_transformers_fast_wrapper_uses_eos_token():
    transformers = pytest.importorskip("transformers")
    tok = _byte_level_tokenizer()
    tok.add_special_tokens(["<my_eos>"])
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<my_eos>")
    info = TokenizerInfo.from_huggingface(fast)
    eos = fast.eos_token_id
    assert info.stop_token_ids == [eos, tok.token_to_id("<|endoftext|>")]
    assert info.decoded_vocab == TokenizerInfo.from_huggingface(tok, stop_token_ids=[
        eos, tok.token_to_id("<|endoftext|>")]).decoded_vocab


def test_transformers_slow_tokenizer():
    transformers = pytest.importorskip("transformers")
    backend = getattr(transformers, "PythonBackend", None) or transformers.PreTrainedTokenizer

    class CharTokenizer(backend):
        def __init__(self, vocab, **kw):
            self._vocab = dict(vocab)
            self._inv = {i: t for t, i in self._vocab.items()}
            super().__init__(**kw)

        @property
        def vocab_size(self):
            return len(self._vocab)

        def get_vocab(self):
            return dict(self._vocab)

        def _tokenize(self, text):
            return list(text)

        def _convert_token_to_id(self, token):
            return self._vocab.get(token, 0)

        def _convert_id_to_token(self, index):
            return self._inv[index]

        def convert_tokens_to_string(self, tokens):
            return "".join(tokens)

    chars = ["<unk>", "</s>", *"abc é€", "ab", " world"]
    tok = CharTokenizer({c: i for i, c in enumerate(chars)}, eos_token="</s>", unk_token="<unk>")
    info = TokenizerInfo.from_huggingface(tok)
    assert info.vocab_type is VocabType.RAW
    assert info.stop_token_ids == [1] and info.special_token_ids == [0, 1]
    assert info.decoded_vocab[2:] == tuple(c.encode() for c in chars[2:])
