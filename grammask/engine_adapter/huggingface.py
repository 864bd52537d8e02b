"""TokenizerInfo from Hugging Face tokenizers: a ``tokenizers.Tokenizer`` or a transformers
tokenizer (fast ones through their tokenizers backend; mistral-common backed ones through
their Tekken/SentencePiece file; other slow ones through convert_ids_to_tokens).

The vocab type is read from the pipeline: a ByteLevel decoder means BYTE_LEVEL; a
ByteFallback or Metaspace decoder, a ``Replace("▁", " ")`` step, a byte-fallback model or a
vocabulary of ``"▁"`` pieces means BYTE_FALLBACK; anything else is RAW. Added tokens that
are not special are text the model can write (``<｜tool▁sep｜>``): their bytes are taken from
the tokenizer's own decode and re-spelled in the vocabulary's alphabet. Then a sample is
checked against the tokenizer's decode (see vocab_checks.verify_against_decode).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

from ..automata.tokenizer_info import (
    TokenizerInfo,
    VocabType,
    decode_vocab,
    encode_byte_fallback,
    encode_byte_level,
)
from ..errors import TokenizerError
from .vocab_checks import (
    default_stop_ids,
    fit_to_vocab_size,
    verify_against_decode,
    warn_if_no_stop,
)

__all__ = ["tokenizer_info_from_huggingface"]

_SPACE_MARK = "\u2581"
# Decoders whose output is not a concatenation of per-token bytes.
_UNSUPPORTED_DECODERS = {"WordPiece", "BPEDecoder", "CTC"}


def tokenizer_info_from_huggingface(
    tokenizer: Any,
    *,
    vocab_size: int | None = None,
    stop_token_ids: Iterable[int] | int | None = None,
) -> TokenizerInfo:
    """See TokenizerInfo.from_huggingface."""
    import tokenizers

    if isinstance(stop_token_ids, int):
        stop_token_ids = [stop_token_ids]
    if isinstance(tokenizer, tokenizers.Tokenizer):
        return _from_backend(tokenizer, [], (), 0, vocab_size, stop_token_ids, "tokenizers.Tokenizer")
    name = type(tokenizer).__name__
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if isinstance(backend, tokenizers.Tokenizer):
        return _from_backend(
            backend,
            _declared_eos(tokenizer),
            getattr(tokenizer, "all_special_ids", ()) or (),
            len(tokenizer),
            vocab_size,
            stop_token_ids,
            name,
        )
    mistral = _mistral_common_file(tokenizer)
    if mistral is not None:
        if mistral.endswith(".json"):
            return TokenizerInfo.from_tekken(
                mistral, vocab_size=vocab_size, stop_token_ids=stop_token_ids
            )
        return TokenizerInfo.from_sentencepiece(
            mistral, vocab_size=vocab_size, stop_token_ids=stop_token_ids
        )
    if callable(getattr(tokenizer, "convert_ids_to_tokens", None)) and callable(
        getattr(tokenizer, "decode", None)
    ):
        return _from_slow(tokenizer, vocab_size, stop_token_ids, name)
    raise TokenizerError(
        f"cannot read a vocabulary from a {name}: expected a transformers tokenizer or a "
        "tokenizers.Tokenizer"
    )


def _declared_eos(tokenizer: Any) -> list[int]:
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        return []
    if isinstance(eos, int):
        return [eos]
    return [int(i) for i in eos]


def _mistral_common_file(tokenizer: Any) -> str | None:
    """The tokenizer file behind transformers' MistralCommonBackend, if that is what this is."""
    if not type(tokenizer).__name__.startswith("MistralCommon"):
        return None
    path = getattr(tokenizer, "_tokenizer_path", None)
    return os.fspath(path) if path is not None else None


def _state(component: Any) -> dict[str, Any] | None:
    """A pipeline component's JSON description (decoder, pre-tokenizer, normalizer)."""
    if component is None:
        return None
    return json.loads(component.__getstate__())


def _parts(state: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The leaf steps of a (possibly nested) Sequence."""
    if state is None:
        return []
    if state.get("type") == "Sequence":
        subs = state.get("decoders") or state.get("pretokenizers") or state.get("normalizers") or []
        return [leaf for sub in subs for leaf in _parts(sub)]
    return [state]


def _looks_sentencepiece(spellings: Iterable[Any]) -> bool:
    total = marked = 0
    for tok in spellings:
        if isinstance(tok, str):
            total += 1
            marked += tok.startswith(_SPACE_MARK)
    return total > 0 and marked * 10 >= total


def _vocab_type_of(backend: Any, model_vocab: dict[str, int], source: str) -> VocabType:
    decoder = _parts(_state(backend.decoder))
    types = {d.get("type") for d in decoder}
    bad = types & _UNSUPPORTED_DECODERS
    if bad:
        raise TokenizerError(
            f"{source}: its {min(bad)} decoder does not join tokens by concatenation, so "
            "tokens have no bytes of their own; grammask supports byte-level BPE, "
            "SentencePiece-style and raw vocabularies"
        )
    if "ByteLevel" in types:
        return VocabType.BYTE_LEVEL
    if types & {"ByteFallback", "Metaspace"}:
        return VocabType.BYTE_FALLBACK
    for d in decoder:
        if d.get("type") == "Replace" and (d.get("pattern") or {}).get("String") == _SPACE_MARK:
            return VocabType.BYTE_FALLBACK
    if backend.decoder is None:
        pre = {p.get("type") for p in _parts(_state(backend.pre_tokenizer))}
        if "ByteLevel" in pre:
            return VocabType.BYTE_LEVEL
        if "Metaspace" in pre:
            return VocabType.BYTE_FALLBACK
    if getattr(backend.model, "byte_fallback", False) or _looks_sentencepiece(model_vocab):
        return VocabType.BYTE_FALLBACK
    return VocabType.RAW


def _adds_prefix_space(first_ids: list[int], encoded: list[str | bytes], vocab_type: VocabType) -> bool:
    """Whether encoding "a" gives a first token that starts with a space: the behaviour,
    whichever pipeline step (Metaspace, Prepend, ByteLevel(add_prefix_space)) causes it."""
    if not first_ids or not 0 <= first_ids[0] < len(encoded):
        return False
    return decode_vocab([encoded[first_ids[0]]], vocab_type)[0].startswith(b" ")


def _unk_id(backend: Any, model_vocab: dict[str, int]) -> int | None:
    model = backend.model
    unk = getattr(model, "unk_token", None)
    if isinstance(unk, str):
        return model_vocab.get(unk)
    if type(model).__name__ == "Unigram":
        uid = json.loads(model.__getstate__()).get("unk_id")
        return int(uid) if uid is not None else None
    return None


def _spell(data: bytes, vocab_type: VocabType) -> str | bytes | None:
    """The spelling that decodes to ``data`` in ``vocab_type`` (None when there is none)."""
    if vocab_type == VocabType.BYTE_LEVEL:
        return encode_byte_level(data)
    if vocab_type == VocabType.BYTE_FALLBACK:
        return encode_byte_fallback(data)
    return data


def _from_backend(
    backend: Any,
    declared_eos: list[int],
    extra_special: Iterable[int],
    min_size: int,
    vocab_size: int | None,
    stop_token_ids: Iterable[int] | None,
    source: str,
) -> TokenizerInfo:
    model_vocab: dict[str, int] = backend.get_vocab(with_added_tokens=False)
    added = backend.get_added_tokens_decoder()
    size = max(
        max(model_vocab.values(), default=-1) + 1, max(added, default=-1) + 1, int(min_size)
    )
    encoded: list[str | bytes] = [""] * size
    for tok, i in model_vocab.items():
        encoded[i] = tok
    vocab_type = _vocab_type_of(backend, model_vocab, source)

    special = {int(i) for i in extra_special if 0 <= int(i) < size}
    known = set(model_vocab.values()) | set(added)
    special.update(i for i in range(size) if i not in known)
    unk = _unk_id(backend, model_vocab)
    if unk is not None:
        special.add(unk)

    can_check = backend.decoder is not None  # without one, decode joins tokens with spaces
    decode = lambda ids: backend.decode(ids, skip_special_tokens=False)
    anchor = model_vocab.get("a")
    text_added = []
    for i, tok in sorted(added.items()):
        if tok.special:
            encoded[i] = tok.content
            special.add(i)
            continue
        if i in special:
            continue
        text = tok.content
        if can_check:
            # Behind the anchor "a", decoders that strip a leading space leave the token alone.
            text = decode([anchor, i]) if anchor is not None else ""
            text = text[1:] if text.startswith("a") else decode([i])
        data = text.encode("utf-8")
        spelled = _spell(data, vocab_type)
        if spelled is None:
            raise TokenizerError(
                f"{source}: added token {i} ({tok.content!r}) decodes to {text!r}, which a "
                f"{vocab_type.name} vocabulary cannot spell"
            )
        encoded[i] = spelled
        text_added.append(i)

    if stop_token_ids is None:
        stops = default_stop_ids(declared_eos, encoded, special | set(added))
    else:
        stops = [int(i) for i in stop_token_ids]
    encoded, special, stops, vocab_size = fit_to_vocab_size(
        encoded, special, stops, vocab_size, source
    )
    info = TokenizerInfo(
        encoded,
        vocab_type,
        vocab_size=vocab_size,
        stop_token_ids=stops,
        add_prefix_space=_adds_prefix_space(
            backend.encode("a", add_special_tokens=False).ids, encoded, vocab_type
        ),
        special_token_ids=special,
    )
    if can_check:
        verify_against_decode(info, decode, source, must_check=text_added)
    warn_if_no_stop(info, source)
    return info


def _from_slow(
    tokenizer: Any,
    vocab_size: int | None,
    stop_token_ids: Iterable[int] | None,
    source: str,
) -> TokenizerInfo:
    """A transformers tokenizer without a tokenizers backend (Python or SentencePiece code):
    read spellings with convert_ids_to_tokens and check them with its decode."""
    size = len(tokenizer)
    spellings = tokenizer.convert_ids_to_tokens(list(range(size)))
    special = {int(i) for i in getattr(tokenizer, "all_special_ids", ()) or ()}
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    special.update(int(i) for i, tok in added.items() if getattr(tok, "special", False))
    encoded: list[str | bytes] = []
    for i, tok in enumerate(spellings):
        if tok is None:
            special.add(i)
            tok = ""
        if not isinstance(tok, (str, bytes)):
            raise TokenizerError(f"{source}: token {i} is spelled {tok!r}, not str or bytes")
        encoded.append(tok)
    strs = [t for t in encoded if isinstance(t, str)]
    if len(strs) < len(encoded) // 2:
        vocab_type = VocabType.RAW
    elif any(t.startswith("<0x") and len(t) == 6 for t in strs) or _looks_sentencepiece(strs):
        vocab_type = VocabType.BYTE_FALLBACK
    elif sum("\u0120" in t for t in strs) * 20 >= len(strs):  # "Ġ" spells the space
        vocab_type = VocabType.BYTE_LEVEL
    else:
        vocab_type = VocabType.RAW

    if stop_token_ids is None:
        stops = default_stop_ids(_declared_eos(tokenizer), encoded, special | set(added))
    else:
        stops = [int(i) for i in stop_token_ids]
    encoded, special, stops, vocab_size = fit_to_vocab_size(
        encoded, special, stops, vocab_size, source
    )
    first = tokenizer.convert_tokens_to_ids(tokenizer.tokenize("a")[:1])
    prefix = _adds_prefix_space(first, encoded, vocab_type)
    info = TokenizerInfo(
        encoded,
        vocab_type,
        vocab_size=vocab_size,
        stop_token_ids=stops,
        add_prefix_space=bool(prefix),
        special_token_ids=special,
    )

    def decode(ids: list[int]) -> str:
        return tokenizer.decode(
            ids, skip_special_tokens=False, clean_up_tokenization_spaces=False
        )

    verify_against_decode(info, decode, source)
    warn_if_no_stop(info, source)
    return info
