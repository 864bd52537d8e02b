"""TokenizerInfo from a SentencePiece model, read with the ``sentencepiece`` package.

Pieces are spelled SentencePiece-style (``"▁"`` for a space, ``<0xNN>`` byte pieces), so the
vocab type is BYTE_FALLBACK whether or not the model has byte fallback. Control, unknown and
unused pieces are special. The result is checked against SentencePiece's own decode.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from ..automata.tokenizer_info import TokenizerInfo, VocabType
from ..errors import TokenizerError
from .vocab_checks import (
    default_stop_ids,
    fit_to_vocab_size,
    verify_against_decode,
    warn_if_no_stop,
)

__all__ = ["tokenizer_info_from_sentencepiece"]


def _processor(model: Any) -> tuple[Any, str]:
    try:
        import sentencepiece
    except ImportError:
        raise TokenizerError(
            "reading a SentencePiece model needs the sentencepiece package "
            "(pip install sentencepiece)"
        ) from None
    if isinstance(model, sentencepiece.SentencePieceProcessor):
        return model, "SentencePieceProcessor"
    path = os.fspath(model)
    if not os.path.isfile(path):
        raise TokenizerError(f"{path}: no such SentencePiece model file")
    sp = sentencepiece.SentencePieceProcessor()
    try:
        sp.Load(path)
    except (OSError, RuntimeError) as exc:
        raise TokenizerError(f"{path}: cannot read as a SentencePiece model: {exc}") from None
    return sp, path


def tokenizer_info_from_sentencepiece(
    model: Any,
    *,
    vocab_size: int | None = None,
    stop_token_ids: Iterable[int] | int | None = None,
) -> TokenizerInfo:
    """See TokenizerInfo.from_sentencepiece."""
    sp, source = _processor(model)
    n = sp.get_piece_size()
    ids = list(range(n))
    encoded: list[str | bytes] = list(sp.id_to_piece(ids))
    special = {
        i for i in ids if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i)
    }
    if stop_token_ids is None:
        stops = default_stop_ids([sp.eos_id()], encoded, special)
    else:
        stops = [stop_token_ids] if isinstance(stop_token_ids, int) else [int(i) for i in stop_token_ids]
    encoded, special, stops, vocab_size = fit_to_vocab_size(
        encoded, special, stops, vocab_size, source
    )
    first = sp.encode("a", out_type=str)[:1]
    info = TokenizerInfo(
        encoded,
        VocabType.BYTE_FALLBACK,
        vocab_size=vocab_size,
        stop_token_ids=stops,
        add_prefix_space=bool(first) and first[0].startswith("\u2581"),
        special_token_ids=special,
    )
    verify_against_decode(info, lambda ids: sp.decode(ids), source)
    warn_if_no_stop(info, source)
    return info
