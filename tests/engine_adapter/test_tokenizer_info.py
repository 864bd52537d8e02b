"""TokenizerInfo on small hand-made vocabularies: decoding rules of the three vocab types,
stop/special detection, padding, metadata, pickling, immutability and errors."""

from __future__ import annotations

import base64
import json
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import grammask as gm
from grammask import TokenizerError, TokenizerInfo, VocabType
from grammask.automata.tokenizer_info import (
    BYTE_LEVEL_CHARS,
    encode_byte_fallback,
    encode_byte_level,
)


def test_vocab_type_values_match_xgrammar():
    assert (VocabType.RAW, VocabType.BYTE_FALLBACK, VocabType.BYTE_LEVEL) == (0, 1, 2)
    assert gm.VocabType is VocabType and gm.TokenizerInfo is TokenizerInfo


def test_raw_vocab_takes_text_and_bytes():
    info = TokenizerInfo(["a", b"\xff\xfe", "é", " x"], VocabType.RAW, stop_token_ids=[])
    assert info.decoded_vocab == (b"a", b"\xff\xfe", "é".encode(), b" x")
    assert info.vocab_size == 4 and info.special_token_ids == [] and info.stop_token_ids == []


def test_byte_fallback_spelling():
    vocab = ["<unk>", "<s>", "</s>", "<0x0A>", "<0xE2>", "▁hello", "▁", "world▁", "<0xZZ>", "<0x4>"]
    info = TokenizerInfo(vocab, VocabType.BYTE_FALLBACK)
    assert info.decoded_vocab[3:] == (
        b"\n", b"\xe2", b" hello", b" ", b"world ", b"<0xZZ>", b"<0x4>"
    )
    assert info.special_token_ids == [0, 1, 2]
    assert info.stop_token_ids == [2]


def test_byte_level_alphabet_is_a_bijection_on_bytes():
    assert len(set(BYTE_LEVEL_CHARS)) == 256
    assert BYTE_LEVEL_CHARS[ord(" ")] == "Ġ" and BYTE_LEVEL_CHARS[ord("\n")] == "Ċ"
    assert BYTE_LEVEL_CHARS[ord("a")] == "a"
    info = TokenizerInfo(["Ġhello", "Ċ", "âĤ¬", "ðŁ", "a"], VocabType.BYTE_LEVEL)
    assert info.decoded_vocab == (b" hello", b"\n", "€".encode(), b"\xf0\x9f", b"a")


def test_byte_level_token_outside_the_alphabet_is_its_own_text():
    # Added tokens such as DeepSeek's "<｜tool▁sep｜>" are stored as text, and the tokenizers
    # ByteLevel decoder passes such a token through whole.
    info = TokenizerInfo(["Ġa", "<｜tool▁sep｜>", "a b", "Ġ x"], VocabType.BYTE_LEVEL)
    assert info.decoded_vocab == (b" a", "<｜tool▁sep｜>".encode(), b"a b", "Ġ x".encode())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=12), max_size=40))
def test_byte_level_spelling_round_trips(tokens):
    info = TokenizerInfo([encode_byte_level(t) for t in tokens], VocabType.BYTE_LEVEL,
                         special_token_ids=[], stop_token_ids=[])
    assert list(info.decoded_vocab) == tokens


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.text(min_size=1, max_size=8), st.binary(min_size=1, max_size=1)),
                max_size=40))
def test_byte_fallback_spelling_round_trips(items):
    tokens = [t.encode("utf-8", "surrogatepass") if isinstance(t, str) else t for t in items]
    spelled = [encode_byte_fallback(t) for t in tokens]
    keep = [(s, t) for s, t in zip(spelled, tokens) if s is not None]
    info = TokenizerInfo([s for s, _ in keep], VocabType.BYTE_FALLBACK,
                         special_token_ids=[], stop_token_ids=[])
    assert list(info.decoded_vocab) == [t for _, t in keep]


def test_encode_byte_fallback_refuses_what_cannot_be_spelled():
    assert encode_byte_fallback(b"\x80") == "<0x80>"
    assert encode_byte_fallback(b"a b") == "a▁b"
    assert encode_byte_fallback("▁".encode()) is None  # would read back as a space
    assert encode_byte_fallback(b"<0x41>") is None  # would read back as b"A"
    assert encode_byte_fallback(b"\xe2\x82") is None  # not text, not one byte


def test_stop_tokens_detected_by_spelling_and_made_special():
    vocab = ["<s>", "hi", "<|im_end|>", "<|endoftext|>", "x", "<|eot_id|>"]
    info = TokenizerInfo(vocab)
    assert info.stop_token_ids == [2, 3, 5]
    assert set(info.stop_token_ids) <= set(info.special_token_ids)
    assert info.special_token_ids == [0, 2, 3, 5]
    assert info.decoded_vocab == (b"", b"hi", b"", b"", b"x", b"")


def test_given_stop_and_special_ids_replace_detection():
    vocab = ["<s>", "hi", "</s>", "", "x"]
    info = TokenizerInfo(vocab, stop_token_ids=[4], special_token_ids=[1])
    assert info.stop_token_ids == [4]
    # given ids, plus the stop ids and the empty token; "<s>"/"</s>" are now plain text
    assert info.special_token_ids == [1, 3, 4]
    assert info.decoded_vocab == (b"<s>", b"", b"</s>", b"", b"")
    assert TokenizerInfo(vocab, stop_token_ids=4).stop_token_ids == [4]


def test_special_ids_are_exactly_the_empty_decoded_ones():
    info = TokenizerInfo(["<unk>", "a", "", "<pad>", "b"], vocab_size=8)
    empty = [i for i, b in enumerate(info.decoded_vocab) if b == b""]
    assert info.special_token_ids == empty == [0, 2, 3, 5, 6, 7]


def test_padding_ids_are_special_and_empty():
    info = TokenizerInfo(["a", "b", "</s>"], vocab_size=40)
    assert info.vocab_size == 40 and len(info.decoded_vocab) == 40
    assert info.decoded_vocab[3:] == (b"",) * 37
    assert set(range(3, 40)) <= set(info.special_token_ids)
    assert info.encoded_vocab == ("a", "b", "</s>")


def test_vocab_size_smaller_than_vocab_is_an_error():
    with pytest.raises(TokenizerError, match="vocab_size 2 is smaller"):
        TokenizerInfo(["a", "b", "c"], vocab_size=2)


def test_add_prefix_space_changes_no_bytes():
    vocab = ["<unk>", "<s>", "</s>", "▁Hello", "Hello"]
    a = TokenizerInfo(vocab, VocabType.BYTE_FALLBACK, add_prefix_space=True)
    b = TokenizerInfo(vocab, VocabType.BYTE_FALLBACK, add_prefix_space=False)
    assert a.add_prefix_space and a.prepend_space_in_tokenization and not b.add_prefix_space
    assert a.decoded_vocab == b.decoded_vocab and a.decoded_vocab[3] == b" Hello"


def test_vocab_type_accepts_int_and_name():
    assert TokenizerInfo(["Ġ"], 2).vocab_type is VocabType.BYTE_LEVEL
    assert TokenizerInfo(["Ġ"], "byte_level").decoded_vocab == (b" ",)
    with pytest.raises(TokenizerError, match="unknown vocab_type"):
        TokenizerInfo(["a"], 7)
    with pytest.raises(TokenizerError, match="unknown vocab_type"):
        TokenizerInfo(["a"], "wordpiece")


def _same(a: TokenizerInfo, b: TokenizerInfo) -> None:
    assert a.decoded_vocab == b.decoded_vocab
    assert a.encoded_vocab == b.encoded_vocab
    assert a.stop_token_ids == b.stop_token_ids
    assert a.special_token_ids == b.special_token_ids
    assert (a.vocab_type, a.vocab_size, a.add_prefix_space) == (
        b.vocab_type, b.vocab_size, b.add_prefix_space
    )


def test_metadata_round_trip():
    vocab = ["<s>", "</s>", "▁a", "<0x41>", "b", "[CTRL]"]
    info = TokenizerInfo(vocab, VocabType.BYTE_FALLBACK, vocab_size=9, stop_token_ids=[1],
                         add_prefix_space=True, special_token_ids=[0, 5])
    meta = json.loads(info.dump_metadata())
    assert meta == {
        "vocab_type": 1, "vocab_size": 9, "add_prefix_space": True,
        "stop_token_ids": [1], "special_token_ids": [0, 1, 5, 6, 7, 8],
    }
    _same(TokenizerInfo.from_vocab_and_metadata(vocab, info.dump_metadata()), info)


def test_metadata_errors():
    with pytest.raises(TokenizerError, match="not JSON"):
        TokenizerInfo.from_vocab_and_metadata(["a"], "{oops")
    with pytest.raises(TokenizerError, match="JSON object"):
        TokenizerInfo.from_vocab_and_metadata(["a"], "[1, 2]")
    with pytest.raises(TokenizerError, match="lacks"):
        TokenizerInfo.from_vocab_and_metadata(["a"], '{"vocab_type": 0}')
    with pytest.raises(TokenizerError, match="outside the vocabulary"):
        TokenizerInfo.from_vocab_and_metadata(
            ["a"], '{"vocab_type": 0, "vocab_size": 1, "stop_token_ids": [3]}'
        )


def test_pickle_round_trip_and_caches_stay_behind():
    info = TokenizerInfo(["Ġa", "b", "<|endoftext|>"], VocabType.BYTE_LEVEL, vocab_size=5)
    object.__setattr__(info, "_some_derived_cache", object())  # how layers above cache
    back = pickle.loads(pickle.dumps(info))
    _same(back, info)
    assert not hasattr(back, "_some_derived_cache")


def test_immutable():
    info = TokenizerInfo(["a", "</s>"])
    with pytest.raises(AttributeError):
        info.vocab_size = 3
    with pytest.raises(AttributeError):
        del info.decoded_vocab
    assert isinstance(info.decoded_vocab, tuple)
    stops = info.stop_token_ids
    stops.append(0)
    info.special_token_ids.append(0)
    assert info.stop_token_ids == [1] and info.special_token_ids == [1]


def test_errors_name_the_token():
    with pytest.raises(TokenizerError, match=r"token 1 \(3\).*expected str or bytes"):
        TokenizerInfo(["a", 3])
    with pytest.raises(TokenizerError, match="token 1 .*surrogate"):
        TokenizerInfo(["a", "\ud800"])
    with pytest.raises(TokenizerError, match="token 0 .*surrogate"):
        TokenizerInfo(["x\ud800"], VocabType.BYTE_LEVEL)
    with pytest.raises(TokenizerError, match="token 1 .*UTF-8 text"):
        TokenizerInfo(["a", b"\xff"], VocabType.BYTE_LEVEL)
    with pytest.raises(TokenizerError, match="stop_token_ids: token id 9 is outside"):
        TokenizerInfo(["a"], stop_token_ids=[9])
    with pytest.raises(TokenizerError, match="special_token_ids: True is not a token id"):
        TokenizerInfo(["a"], special_token_ids=[True])
    with pytest.raises(TokenizerError, match="not a token id"):
        TokenizerInfo(["a"], stop_token_ids=["0"])


# --- converters on small synthetic inputs ----------------------------------------------------


def test_from_tiktoken_mapping_with_holes_and_padding():
    ranks = {b"a": 0, b"b": 1, b" c": 3}
    info = TokenizerInfo.from_tiktoken(ranks, {"<|endoftext|>": 4, "<|im_start|>": 5},
                                       vocab_size=8)
    assert info.vocab_type is VocabType.RAW
    assert info.decoded_vocab == (b"a", b"b", b"", b" c", b"", b"", b"", b"")
    assert info.stop_token_ids == [4]
    assert info.special_token_ids == [2, 4, 5, 6, 7]


def test_from_tiktoken_errors(tmp_path):
    with pytest.raises(TokenizerError, match="id 1 is given to both"):
        TokenizerInfo.from_tiktoken({b"a": 0, b"b": 1}, {"<s>": 1})
    with pytest.raises(TokenizerError, match="not bytes"):
        TokenizerInfo.from_tiktoken({"a": 0})
    with pytest.raises(TokenizerError, match="expected a"):
        TokenizerInfo.from_tiktoken(42)
    bad = tmp_path / "bad.tiktoken"
    bad.write_bytes(base64.b64encode(b"a") + b" 0\n" + b"!!notbase64 1\n")
    with pytest.raises(TokenizerError, match=r"bad.tiktoken:2: malformed"):
        TokenizerInfo.from_tiktoken(bad)
    with pytest.raises(TokenizerError, match="cannot read"):
        TokenizerInfo.from_tiktoken(tmp_path / "missing.tiktoken")


def test_from_tiktoken_rank_file(tmp_path):
    path = tmp_path / "tiny.tiktoken"
    path.write_bytes(b"".join(base64.b64encode(t) + b" %d\n" % i
                              for i, t in enumerate([b"x", b"\xff", b" yz"])))
    info = TokenizerInfo.from_tiktoken(str(path), {"<|endoftext|>": 3})
    assert info.decoded_vocab == (b"x", b"\xff", b" yz", b"")
    assert info.stop_token_ids == [3]


def _write_tekken(path, specials=None, n_special=4, n_total=7):
    vocab = [{"rank": i, "token_bytes": base64.b64encode(t).decode(), "token_str": None}
             for i, t in enumerate([b"a", b"b", b" c", b"d", b"e"])]
    data = {"config": {"pattern": ".", "num_vocab_tokens": 5, "default_vocab_size": n_total,
                       "default_num_special_tokens": n_special, "version": "v7"},
            "vocab": vocab}
    if specials is not None:
        data["special_tokens"] = [{"rank": i, "token_str": s, "is_control": True}
                                  for i, s in enumerate(specials)]
    path.write_text(json.dumps(data))
    return path


def test_from_tekken_layout(tmp_path):
    info = TokenizerInfo.from_tekken(_write_tekken(tmp_path / "t.json", ["<unk>", "<s>", "</s>"]))
    # ids 0..3 special (one filler), then ranks 0..2 (cut at default_vocab_size 7)
    assert info.encoded_vocab == ("<unk>", "<s>", "</s>", "<SPECIAL_3>", b"a", b"b", b" c")
    assert info.decoded_vocab[4:] == (b"a", b"b", b" c")
    assert info.special_token_ids == [0, 1, 2, 3] and info.stop_token_ids == [2]


def test_from_tekken_legacy_specials_and_errors(tmp_path):
    info = TokenizerInfo.from_tekken(_write_tekken(tmp_path / "t.json", n_special=25, n_total=27))
    assert info.encoded_vocab[:4] == ("<unk>", "<s>", "</s>", "[INST]")
    assert info.encoded_vocab[24] == "<SPECIAL_24>" and info.stop_token_ids == [2]
    with pytest.raises(TokenizerError, match="does not fit"):
        TokenizerInfo.from_tekken(_write_tekken(tmp_path / "u.json", ["<s>"], n_total=99))
    (tmp_path / "v.json").write_text('{"vocab": []}')
    with pytest.raises(TokenizerError, match="not a Tekken file"):
        TokenizerInfo.from_tekken(tmp_path / "v.json")
    with pytest.raises(TokenizerError, match="cannot read"):
        TokenizerInfo.from_tekken(tmp_path / "none.json")


def test_from_sentencepiece_bad_input(tmp_path):
    pytest.importorskip("sentencepiece", reason="sentencepiece (test extra) not installed")
    with pytest.raises(TokenizerError, match="no such SentencePiece model"):
        TokenizerInfo.from_sentencepiece(tmp_path / "missing.model")
    junk = tmp_path / "junk.model"
    junk.write_bytes(b"not a model")
    with pytest.raises(TokenizerError, match="cannot read as a SentencePiece model"):
        TokenizerInfo.from_sentencepiece(junk)


def test_from_huggingface_rejects_unknown_objects():
    with pytest.raises(TokenizerError, match="cannot read a vocabulary from a dict"):
        TokenizerInfo.from_huggingface({"a": 0})
