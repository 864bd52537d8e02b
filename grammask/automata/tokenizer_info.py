"""The vocabulary as the engine sees it: for every token id, the bytes it appends to the output.

A tokenizer spells its tokens in its own alphabet ("Ġhello" in GPT-2 byte-level BPE, "▁hello"
and "<0x0A>" in SentencePiece, plain text or bytes in tiktoken files). TokenizerInfo turns those
spellings into bytes once, decides which ids a grammar can never produce (control tokens,
unknown, padding) and which ids end generation, and then stays immutable so that compiled
grammars and matchers on any thread can share it.

Converters from outside formats (transformers, tokenizers, tiktoken, Tekken, SentencePiece)
live in ``grammask.engine_adapter``; the classmethods here import them lazily, so this layer
imports nothing above it.
"""

from __future__ import annotations

import enum
import json
import operator
import os
from collections.abc import Iterable, Sequence
from itertools import compress
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import TokenizerError

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Mapping

__all__ = ["KNOWN_END_TOKENS", "TokenizerInfo", "VocabType"]


class VocabType(enum.IntEnum):
    """How a vocabulary spells the bytes of its tokens.

    ``RAW``: a ``str`` token is its own UTF-8 text; a ``bytes`` token is its bytes (tiktoken,
    Tekken, character-level vocabularies).
    ``BYTE_FALLBACK``: SentencePiece spelling: ``"▁"`` is a space and ``"<0xNN>"`` is the single
    byte ``0xNN``; anything else is UTF-8 text.
    ``BYTE_LEVEL``: GPT-2 byte-level BPE: each byte is spelled by one printable character
    (``"Ġ"`` is the space). A token with a character outside that alphabet (an added token
    such as ``"<｜tool▁sep｜>"``) stands for its own UTF-8 text, as the tokenizers library's
    ByteLevel decoder reads it.
    """

    RAW = 0
    BYTE_FALLBACK = 1
    BYTE_LEVEL = 2


# Spellings of end-of-generation tokens across model families. When no stop ids are given,
# every token spelled like one of these is a stop token (the converters look only at the
# tokenizer's special and added tokens, never at ordinary text tokens), together with the
# tokenizer's declared eos id.
KNOWN_END_TOKENS: tuple[str, ...] = (
    "</s>",
    "<|endoftext|>",
    "<|im_end|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end_of_text|>",
    "<|end|>",
    "<|return|>",
    "<end_of_turn>",
    "<eos>",
    "<|eos|>",
    "<｜end▁of▁sentence｜>",
)

# Control spellings the plain constructor treats as special when it is given no
# special_token_ids (the converters know their tokenizer's control tokens exactly).
_KNOWN_CONTROL_TOKENS: tuple[str, ...] = KNOWN_END_TOKENS + (
    "<s>",
    "<unk>",
    "<pad>",
    "<bos>",
    "<|begin_of_text|>",
    "<|im_start|>",
    "<｜begin▁of▁sentence｜>",
)

_SPACE_MARK = "\u2581"  # "▁", SentencePiece's spelling of a space


def _byte_level_chars() -> list[str]:
    """``chars[b]`` is the character that GPT-2-style byte-level BPE uses for byte ``b``.

    Bytes that are printable Latin-1 characters keep their own character; every other byte
    (controls, space, DEL, NBSP, soft hyphen) is moved, in increasing order, to U+0100 onward.
    """
    keeps_own = set(range(0x21, 0x7F)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    chars = []
    moved = 0
    for b in range(256):
        if b in keeps_own:
            chars.append(chr(b))
        else:
            chars.append(chr(0x100 + moved))
            moved += 1
    return chars


BYTE_LEVEL_CHARS: tuple[str, ...] = tuple(_byte_level_chars())

# Code point -> byte for the byte-level alphabet (which ends at U+0143); -1 elsewhere.
_BYTE_LEVEL_LUT = np.full(0x144, -1, dtype=np.int16)
_BYTE_LEVEL_LUT[[ord(ch) for ch in BYTE_LEVEL_CHARS]] = np.arange(256, dtype=np.int16)


def encode_byte_level(data: bytes) -> str:
    """Spell ``data`` in the byte-level alphabet (the inverse of byte-level decoding)."""
    return "".join(BYTE_LEVEL_CHARS[b] for b in data)


def _byte_fallback_byte(token: str) -> int:
    """The byte of a ``"<0xNN>"`` token, or -1 when ``token`` is not one."""
    if len(token) == 6 and token.startswith("<0x") and token[5] == ">":
        hex_digits = token[3:5]
        if all(c in "0123456789abcdefABCDEF" for c in hex_digits):
            return int(hex_digits, 16)
    return -1


def encode_byte_fallback(data: bytes) -> str | None:
    """Spell ``data`` SentencePiece-style, or None where no spelling decodes back to it."""
    if len(data) == 1 and data[0] >= 0x80:
        return f"<0x{data[0]:02X}>"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if _SPACE_MARK in text or _byte_fallback_byte(text) >= 0:
        return None
    return text.replace(" ", _SPACE_MARK)


def _token_error(token_id: int, spelling: str | bytes, why: str) -> TokenizerError:
    return TokenizerError(f"token {token_id} ({spelling!r}): {why}")


def _as_text(vocab: list[str | bytes], vocab_type: VocabType) -> list[str]:
    """The spellings as str (byte-level and byte-fallback spellings are text by nature)."""
    out = []
    for i, tok in enumerate(vocab):
        if isinstance(tok, str):
            out.append(tok)
        else:
            try:
                out.append(bytes(tok).decode("utf-8"))
            except UnicodeDecodeError:
                raise _token_error(
                    i, tok, f"a {vocab_type.name} vocabulary spells tokens as UTF-8 text"
                ) from None
    return out


def _decode_raw(vocab: list[str | bytes]) -> list[bytes]:
    out = []
    for i, tok in enumerate(vocab):
        if isinstance(tok, str):
            try:
                out.append(tok.encode("utf-8"))
            except UnicodeEncodeError:
                raise _token_error(i, tok, "not encodable as UTF-8 (lone surrogate)") from None
        else:
            out.append(bytes(tok))
    return out


def _decode_byte_fallback(vocab: list[str]) -> list[bytes]:
    out = []
    for i, tok in enumerate(vocab):
        b = _byte_fallback_byte(tok)
        if b >= 0:
            out.append(bytes((b,)))
            continue
        try:
            out.append(tok.replace(_SPACE_MARK, " ").encode("utf-8"))
        except UnicodeEncodeError:
            raise _token_error(i, tok, "not encodable as UTF-8 (lone surrogate)") from None
    return out


def _decode_byte_level(vocab: list[str]) -> list[bytes]:
    # Vectorized over the whole vocabulary: every alphabet character is exactly one byte, so
    # the joined text maps code point by code point to the joined bytes, which are then cut
    # at the tokens' character offsets. Tokens with other characters are redone as UTF-8.
    joined = "".join(vocab)
    points = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    in_table = points < len(_BYTE_LEVEL_LUT)
    values = _BYTE_LEVEL_LUT[np.where(in_table, points, 0)]
    foreign = ~in_table | (values < 0)
    image = values.astype(np.uint8).tobytes()
    ends_np = np.cumsum(np.fromiter(map(len, vocab), dtype=np.int64, count=len(vocab)))
    ends = ends_np.tolist()
    out = [image[s:e] for s, e in zip([0, *ends], ends)]
    if foreign.any():
        redo = np.unique(np.searchsorted(ends_np, np.flatnonzero(foreign), side="right"))
        for i in redo.tolist():
            try:
                out[i] = vocab[i].encode("utf-8")
            except UnicodeEncodeError:
                raise _token_error(i, vocab[i], "not encodable as UTF-8 (lone surrogate)") from None
    return out


def decode_vocab(vocab: Sequence[str | bytes], vocab_type: VocabType) -> list[bytes]:
    """The bytes of every spelling in ``vocab`` under ``vocab_type`` (no special handling)."""
    vocab = list(vocab)
    kinds = set(map(type, vocab))
    if not kinds <= {str, bytes}:
        for i, tok in enumerate(vocab):
            if not isinstance(tok, (str, bytes, bytearray)):
                raise _token_error(i, tok, f"expected str or bytes, got {type(tok).__name__}")
    if vocab_type == VocabType.RAW:
        return _decode_raw(vocab)
    text = vocab if kinds <= {str} else _as_text(vocab, vocab_type)
    if vocab_type == VocabType.BYTE_FALLBACK:
        return _decode_byte_fallback(text)
    return _decode_byte_level(text)


def _coerce_vocab_type(vocab_type: Any) -> VocabType:
    if isinstance(vocab_type, str):
        try:
            return VocabType[vocab_type.upper()]
        except KeyError:
            pass
    else:
        try:
            return VocabType(vocab_type)
        except ValueError:
            pass
    raise TokenizerError(
        f"unknown vocab_type {vocab_type!r}; expected one of {[t.name for t in VocabType]}"
    )


def _check_ids(ids: Iterable[Any], vocab_size: int, what: str) -> list[int]:
    out: list[int] = []
    seen: set[int] = set()
    for t in ids:
        try:
            if isinstance(t, bool):
                raise TypeError
            t = operator.index(t)
        except TypeError:
            raise TokenizerError(f"{what}: {t!r} is not a token id") from None
        if not 0 <= t < vocab_size:
            raise TokenizerError(f"{what}: token id {t} is outside the vocabulary [0, {vocab_size})")
        if t not in seen:
            seen.add(t)
            out.append(t)
    return out


def ids_spelled(vocab: Sequence[str | bytes], spellings: Iterable[str]) -> list[int]:
    """Ids whose spelling (as text, or as UTF-8 bytes) is one of ``spellings``, by id."""
    wanted = set(spellings)
    wanted_bytes = {s.encode("utf-8") for s in wanted}
    return [
        i
        for i, tok in enumerate(vocab)
        if (tok in wanted if isinstance(tok, str) else bytes(tok) in wanted_bytes)
    ]


class TokenizerInfo:
    """A tokenizer's vocabulary as bytes, with its stop and special token ids.

    Args:
        encoded_vocab: the tokenizer's own spelling of each token id, index = id (``str`` or
            ``bytes``; see :class:`VocabType` for how each type is read).
        vocab_type: how ``encoded_vocab`` spells bytes.
        vocab_size: the model's vocabulary size (the width of its logits). It may exceed
            ``len(encoded_vocab)`` when the embedding is padded; the extra ids decode to
            ``b""`` and are never allowed. Defaults to ``len(encoded_vocab)``.
        stop_token_ids: ids that end generation. When None they are detected: every id
            spelled like one of :data:`KNOWN_END_TOKENS` (``</s>``, ``<|endoftext|>``,
            ``<|im_end|>``, ``<|eot_id|>``, ``<|end_of_text|>``...). This may find none; a
            matcher then ends only with ``terminate_without_stop_token``.
        add_prefix_space: whether the tokenizer prepends a space to the text it encodes
            (SentencePiece's dummy prefix, Metaspace, ByteLevel(add_prefix_space=True)).
            It changes no decoded bytes: ``"▁Hello"`` is ``b" Hello"`` in every position,
            the first generated token included, because the engine matches the bytes a
            token appends to the output. (A detokenizer that decodes the generated ids on
            their own drops that one leading space; a grammar sees it.)
        special_token_ids: ids a grammar never produces. When None, the ids spelled like a
            known control token (``<s>``, ``</s>``, ``<unk>``, ``<pad>``, ``<|im_start|>``
            and the known end tokens) are taken. Either way the set is completed with the
            stop tokens, the padding ids and every id whose spelling decodes to no bytes.

    Attributes (read-only):
        vocab_size, vocab_type, add_prefix_space,
        decoded_vocab: a tuple of ``vocab_size`` bytes objects, the bytes each id appends to
            the output; ``b""`` exactly for the special ids.
        encoded_vocab: the spellings, as given (a tuple, without padding).
        stop_token_ids, special_token_ids: lists of ids (special_token_ids sorted; it
            contains the stop ids).

    Raises:
        TokenizerError: a spelling that is neither str nor bytes, text that is not UTF-8,
            ``vocab_size`` smaller than the vocabulary, an id out of range, a bad vocab_type.
    """

    # "__dict__": derived structures (the token trie) are cached on the instance by the layers
    # that build them, with object.__setattr__; they are not pickled.
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_add_prefix_space",
        "_decoded_vocab",
        "_encoded_vocab",
        "_special_token_ids",
        "_stop_token_ids",
        "_vocab_size",
        "_vocab_type",
    )

    def __init__(
        self,
        encoded_vocab: Sequence[str | bytes],
        vocab_type: VocabType | int | str = VocabType.RAW,
        *,
        vocab_size: int | None = None,
        stop_token_ids: Iterable[int] | int | None = None,
        add_prefix_space: bool = False,
        special_token_ids: Iterable[int] | None = None,
    ) -> None:
        vocab_type = _coerce_vocab_type(vocab_type)
        encoded = tuple(encoded_vocab)
        if vocab_size is None:
            vocab_size = len(encoded)
        vocab_size = int(vocab_size)
        if vocab_size < len(encoded):
            raise TokenizerError(
                f"vocab_size {vocab_size} is smaller than the vocabulary ({len(encoded)} tokens)"
            )
        decoded = decode_vocab(encoded, vocab_type)
        decoded.extend([b""] * (vocab_size - len(encoded)))

        if stop_token_ids is None:
            stops = ids_spelled(encoded, KNOWN_END_TOKENS)
        else:
            if isinstance(stop_token_ids, int):
                stop_token_ids = [stop_token_ids]
            stops = _check_ids(stop_token_ids, vocab_size, "stop_token_ids")

        if special_token_ids is None:
            special = set(ids_spelled(encoded, _KNOWN_CONTROL_TOKENS))
        else:
            special = set(_check_ids(special_token_ids, vocab_size, "special_token_ids"))
        special.update(stops)
        special.update(compress(range(len(decoded)), map(operator.not_, decoded)))
        for i in special:
            decoded[i] = b""

        object.__setattr__(self, "_encoded_vocab", encoded)
        object.__setattr__(self, "_decoded_vocab", tuple(decoded))
        object.__setattr__(self, "_vocab_type", vocab_type)
        object.__setattr__(self, "_vocab_size", vocab_size)
        object.__setattr__(self, "_stop_token_ids", tuple(stops))
        object.__setattr__(self, "_special_token_ids", tuple(sorted(special)))
        object.__setattr__(self, "_add_prefix_space", bool(add_prefix_space))

    # --- read-only attributes -------------------------------------------------------------

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"TokenizerInfo is immutable; cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"TokenizerInfo is immutable; cannot delete {name!r}")

    @property
    def vocab_size(self) -> int:
        """The model's vocabulary size: the length of decoded_vocab and of a mask row."""
        return self._vocab_size

    @property
    def vocab_type(self) -> VocabType:
        """How encoded_vocab spells bytes."""
        return self._vocab_type

    @property
    def add_prefix_space(self) -> bool:
        """Whether the tokenizer prepends a space to the text it encodes."""
        return self._add_prefix_space

    @property
    def prepend_space_in_tokenization(self) -> bool:
        """Alias of add_prefix_space (XGrammar's older name)."""
        return self._add_prefix_space

    @property
    def decoded_vocab(self) -> tuple[bytes, ...]:
        """The bytes each token id appends to the output (``b""`` for special ids)."""
        return self._decoded_vocab

    @property
    def encoded_vocab(self) -> tuple[str | bytes, ...]:
        """The spellings this info was built from (pass them to from_vocab_and_metadata)."""
        return self._encoded_vocab

    @property
    def stop_token_ids(self) -> list[int]:
        """Ids that end generation (a fresh list)."""
        return list(self._stop_token_ids)

    @property
    def special_token_ids(self) -> list[int]:
        """Sorted ids a grammar never produces, stop ids included (a fresh list)."""
        return list(self._special_token_ids)

    def __repr__(self) -> str:
        return (
            f"TokenizerInfo(vocab_type={self._vocab_type.name}, vocab_size={self._vocab_size}, "
            f"stop_token_ids={list(self._stop_token_ids)}, "
            f"special_tokens={len(self._special_token_ids)}, "
            f"add_prefix_space={self._add_prefix_space})"
        )

    # --- serialization --------------------------------------------------------------------

    def dump_metadata(self) -> str:
        """Everything but the vocabulary, as a JSON string for from_vocab_and_metadata."""
        return json.dumps(
            {
                "vocab_type": int(self._vocab_type),
                "vocab_size": self._vocab_size,
                "add_prefix_space": self._add_prefix_space,
                "stop_token_ids": list(self._stop_token_ids),
                "special_token_ids": list(self._special_token_ids),
            }
        )

    @classmethod
    def from_vocab_and_metadata(
        cls, encoded_vocab: Sequence[str | bytes], metadata: str
    ) -> TokenizerInfo:
        """Rebuild an info from its spellings and the string dump_metadata returned.

        Raises:
            TokenizerError: the metadata is not such a JSON object, or does not fit the vocab.
        """
        try:
            meta = json.loads(metadata)
        except (TypeError, ValueError) as exc:
            raise TokenizerError(f"tokenizer metadata is not JSON: {exc}") from None
        if not isinstance(meta, dict):
            raise TokenizerError("tokenizer metadata must be a JSON object")
        missing = {"vocab_type", "vocab_size", "stop_token_ids"} - meta.keys()
        if missing:
            raise TokenizerError(f"tokenizer metadata lacks {sorted(missing)}")
        return cls(
            encoded_vocab,
            meta["vocab_type"],
            vocab_size=meta["vocab_size"],
            stop_token_ids=meta["stop_token_ids"],
            add_prefix_space=bool(meta.get("add_prefix_space", False)),
            special_token_ids=meta.get("special_token_ids"),
        )

    def __getstate__(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _STATE}

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        for name in _STATE:
            object.__setattr__(self, name, state[name])

    # --- converters from outside formats (code in grammask.engine_adapter) -------------------

    @classmethod
    def from_huggingface(
        cls,
        tokenizer: Any,
        *,
        vocab_size: int | None = None,
        stop_token_ids: Iterable[int] | int | None = None,
    ) -> TokenizerInfo:
        """Build from a transformers tokenizer or a bare ``tokenizers.Tokenizer``.

        The vocab type is read from the tokenizer's decoder, pre-tokenizer and model (a
        ByteLevel decoder means BYTE_LEVEL; ByteFallback, Metaspace or a "▁" vocabulary
        means BYTE_FALLBACK; otherwise RAW) and then checked: a sample of tokens, decoded
        here, must equal what the tokenizer's own decode gives.

        Args:
            tokenizer: ``PreTrainedTokenizerFast`` (any transformers tokenizer with a
                tokenizers backend), a slow transformers tokenizer, or ``tokenizers.Tokenizer``.
            vocab_size: the model's vocabulary size when it differs from the tokenizer's
                (padded embedding). Smaller is accepted only if the ids cut off are special.
            stop_token_ids: overrides detection (eos_token_id plus the known end tokens
                among the tokenizer's special and added tokens).

        Raises:
            TokenizerError: the tokenizer's decoder cannot be expressed as per-token bytes, or
                a sampled token decodes differently (the message names its id and spelling).
        """
        from ..engine_adapter.huggingface import tokenizer_info_from_huggingface

        return tokenizer_info_from_huggingface(
            tokenizer, vocab_size=vocab_size, stop_token_ids=stop_token_ids
        )

    @classmethod
    def from_tiktoken(
        cls,
        ranks: Mapping[bytes, int] | str | os.PathLike[str] | Any,
        special_tokens: Mapping[str, int] | None = None,
        *,
        vocab_size: int | None = None,
        stop_token_ids: Iterable[int] | int | None = None,
    ) -> TokenizerInfo:
        """Build from tiktoken-style BPE ranks (a RAW vocabulary of byte strings).

        Args:
            ranks: ``{token_bytes: id}``, the path of a ``.tiktoken`` rank file (one
                ``base64 id`` pair per line), or a ``tiktoken.Encoding``.
            special_tokens: ``{text: id}`` of the special tokens (not needed for an Encoding).
            vocab_size: the model's vocabulary size when larger than the highest id + 1.
            stop_token_ids: overrides detection (special tokens spelled like a known end
                token, e.g. ``<|endoftext|>`` and ``<|im_end|>``).

        Raises:
            TokenizerError: a malformed rank file (names the line) or clashing ids.
        """
        from ..engine_adapter.tiktoken_files import tokenizer_info_from_tiktoken

        return tokenizer_info_from_tiktoken(
            ranks, special_tokens, vocab_size=vocab_size, stop_token_ids=stop_token_ids
        )

    @classmethod
    def from_tekken(
        cls,
        path: str | os.PathLike[str],
        *,
        vocab_size: int | None = None,
        stop_token_ids: Iterable[int] | int | None = None,
    ) -> TokenizerInfo:
        """Build from a Mistral Tekken tokenizer JSON file (``tekken*.json``).

        Ids ``0 .. num_special-1`` are the special tokens (those the file lists, else
        Mistral's legacy list, padded with ``<SPECIAL_n>``); token rank ``r`` is id
        ``num_special + r``, up to the file's ``default_vocab_size``. Stop: ``</s>`` plus
        known end tokens, unless ``stop_token_ids`` is given.

        Raises:
            TokenizerError: the file is not a Tekken JSON file or is inconsistent.
        """
        from ..engine_adapter.tiktoken_files import tokenizer_info_from_tekken

        return tokenizer_info_from_tekken(
            path, vocab_size=vocab_size, stop_token_ids=stop_token_ids
        )

    @classmethod
    def from_sentencepiece(
        cls,
        model: str | os.PathLike[str] | Any,
        *,
        vocab_size: int | None = None,
        stop_token_ids: Iterable[int] | int | None = None,
    ) -> TokenizerInfo:
        """Build from a SentencePiece model (a ``.model`` path or a SentencePieceProcessor).

        Read with the ``sentencepiece`` package. Control, unknown and unused pieces are
        special; the vocab type is BYTE_FALLBACK (``"▁"`` spelling, ``<0xNN>`` byte pieces)
        and is checked against SentencePiece's own decode. Stop: the model's eos id plus
        known end tokens, unless ``stop_token_ids`` is given.

        Raises:
            TokenizerError: the file cannot be read, or a piece decodes differently.
        """
        from ..engine_adapter.sentencepiece_model import tokenizer_info_from_sentencepiece

        return tokenizer_info_from_sentencepiece(
            model, vocab_size=vocab_size, stop_token_ids=stop_token_ids
        )


_STATE = tuple(name for name in TokenizerInfo.__slots__ if not name.startswith("__"))
