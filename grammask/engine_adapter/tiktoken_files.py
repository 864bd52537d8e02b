"""TokenizerInfo from tiktoken-style vocabularies: ``.tiktoken`` rank files (Qwen, OpenAI),
``tiktoken.Encoding`` objects, and Mistral's Tekken JSON files.

These vocabularies are byte strings already (VocabType.RAW); ids missing from the ranks are
holes, decoded to no bytes and so special.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

from ..automata.tokenizer_info import TokenizerInfo, VocabType
from ..errors import TokenizerError
from .vocab_checks import default_stop_ids, fit_to_vocab_size, warn_if_no_stop

__all__ = [
    "LEGACY_TEKKEN_SPECIAL_TOKENS",
    "load_tiktoken_ranks",
    "tokenizer_info_from_tekken",
    "tokenizer_info_from_tiktoken",
]

# The special tokens of Tekken files that do not list their own (format versions up to v7),
# at ids 0..19; the rest of the special block is filled with "<SPECIAL_n>".
LEGACY_TEKKEN_SPECIAL_TOKENS: tuple[str, ...] = (
    "<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]",
    "[TOOL_RESULTS]", "[/TOOL_RESULTS]", "[TOOL_CALLS]", "[IMG]", "<pad>", "[IMG_BREAK]",
    "[IMG_END]", "[PREFIX]", "[MIDDLE]", "[SUFFIX]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]",
    "[TOOL_CONTENT]",
)  # fmt: skip


def load_tiktoken_ranks(path: str | os.PathLike[str]) -> dict[bytes, int]:
    """Read a ``.tiktoken`` rank file: one ``<base64 token> <rank>`` pair per line.

    Raises:
        TokenizerError: naming the file and line of a malformed entry.
    """
    path = os.fspath(path)
    ranks: dict[bytes, int] = {}
    try:
        with open(path, "rb") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise TokenizerError(f"{path}: cannot read the rank file: {exc}") from None
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            if len(parts) != 2:
                raise ValueError("expected '<base64 token> <rank>'")
            token = base64.b64decode(parts[0], validate=True)
            rank = int(parts[1])
        except (ValueError, binascii.Error) as exc:
            raise TokenizerError(f"{path}:{lineno}: malformed rank line {line[:60]!r}: {exc}") from None
        if token in ranks:
            raise TokenizerError(f"{path}:{lineno}: token {token!r} is listed twice")
        ranks[token] = rank
    return ranks


def _is_tiktoken_encoding(obj: Any) -> bool:
    return all(
        hasattr(obj, name) for name in ("decode_single_token_bytes", "n_vocab", "special_tokens_set")
    )


def _from_encoding(enc: Any) -> tuple[dict[bytes, int], dict[str, int]]:
    specials = {s: enc.encode_single_token(s) for s in enc.special_tokens_set}
    special_ids = set(specials.values())
    ranks: dict[bytes, int] = {}
    for i in range(enc.n_vocab):
        if i in special_ids:
            continue
        try:
            ranks[enc.decode_single_token_bytes(i)] = i
        except KeyError:  # a hole in the id space
            continue
    return ranks, specials


def _build(
    ranks: Mapping[bytes, int],
    special_tokens: Mapping[str, int],
    vocab_size: int | None,
    stop_token_ids: Iterable[int] | int | None,
    source: str,
    declared_eos: Iterable[int] = (),
) -> TokenizerInfo:
    owner: dict[int, Any] = {}
    for table in (ranks, special_tokens):
        for tok, i in table.items():
            i = int(i)
            if i < 0:
                raise TokenizerError(f"{source}: token {tok!r} has a negative id {i}")
            if i in owner:
                raise TokenizerError(f"{source}: id {i} is given to both {owner[i]!r} and {tok!r}")
            owner[i] = tok
    size = max(owner, default=-1) + 1
    encoded: list[str | bytes] = [b""] * size
    for i, tok in owner.items():
        encoded[i] = tok if isinstance(tok, str) else bytes(tok)
    special = {int(i) for i in special_tokens.values()}
    if stop_token_ids is None:
        stops = default_stop_ids(declared_eos, encoded, special)
    else:
        stops = [stop_token_ids] if isinstance(stop_token_ids, int) else [int(i) for i in stop_token_ids]
    encoded, special, stops, vocab_size = fit_to_vocab_size(
        encoded, special, stops, vocab_size, source
    )
    info = TokenizerInfo(
        encoded,
        VocabType.RAW,
        vocab_size=vocab_size,
        stop_token_ids=stops,
        special_token_ids=special,
    )
    warn_if_no_stop(info, source)
    return info


def tokenizer_info_from_tiktoken(
    ranks: Any,
    special_tokens: Mapping[str, int] | None = None,
    *,
    vocab_size: int | None = None,
    stop_token_ids: Iterable[int] | int | None = None,
) -> TokenizerInfo:
    """See TokenizerInfo.from_tiktoken."""
    special_tokens = dict(special_tokens or {})
    if _is_tiktoken_encoding(ranks):
        source = f"tiktoken encoding {getattr(ranks, 'name', '')!r}"
        table, own_specials = _from_encoding(ranks)
        own_specials.update(special_tokens)
        return _build(table, own_specials, vocab_size, stop_token_ids, source)
    if isinstance(ranks, (str, os.PathLike)):
        source = os.fspath(ranks)
        table = load_tiktoken_ranks(ranks)
    elif isinstance(ranks, Mapping):
        source = "tiktoken ranks"
        table = {}
        for tok, i in ranks.items():
            if not isinstance(tok, (bytes, bytearray)):
                raise TokenizerError(f"tiktoken ranks: key {tok!r} is not bytes")
            table[bytes(tok)] = i
    else:
        raise TokenizerError(
            f"from_tiktoken: expected a {{bytes: id}} mapping, a rank file path or a "
            f"tiktoken.Encoding, got {type(ranks).__name__}"
        )
    for name in special_tokens:
        if not isinstance(name, str):
            raise TokenizerError(f"{source}: special token {name!r} is not a str")
    return _build(table, special_tokens, vocab_size, stop_token_ids, source)


def tokenizer_info_from_tekken(
    path: str | os.PathLike[str],
    *,
    vocab_size: int | None = None,
    stop_token_ids: Iterable[int] | int | None = None,
) -> TokenizerInfo:
    """See TokenizerInfo.from_tekken."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise TokenizerError(f"{path}: cannot read Tekken JSON: {exc}") from None
    try:
        config = data["config"]
        vocab = data["vocab"]
        n_special = int(config["default_num_special_tokens"])
        n_total = int(config["default_vocab_size"])
    except (KeyError, TypeError, ValueError) as exc:
        raise TokenizerError(f"{path}: not a Tekken file (missing {exc})") from None

    listed = data.get("special_tokens")
    if listed is None:
        specials = list(LEGACY_TEKKEN_SPECIAL_TOKENS)
    else:
        specials = [""] * len(listed)
        for k, entry in enumerate(listed):
            try:
                rank, text = int(entry["rank"]), entry["token_str"]
            except (KeyError, TypeError, ValueError):
                raise TokenizerError(f"{path}: special_tokens[{k}] lacks rank/token_str") from None
            if not 0 <= rank < len(listed) or specials[rank]:
                raise TokenizerError(f"{path}: special_tokens[{k}] has a bad or repeated rank {rank}")
            specials[rank] = text
    if len(specials) > n_special:
        raise TokenizerError(
            f"{path}: {len(specials)} special tokens listed but the file reserves {n_special}"
        )
    specials += [f"<SPECIAL_{i}>" for i in range(len(specials), n_special)]

    n_regular = n_total - n_special
    if not 0 <= n_regular <= len(vocab):
        raise TokenizerError(
            f"{path}: default_vocab_size {n_total} does not fit {len(vocab)} tokens and "
            f"{n_special} special ones"
        )
    encoded: list[str | bytes] = list(specials)
    for rank, entry in enumerate(vocab[:n_regular]):
        try:
            if int(entry["rank"]) != rank:
                raise ValueError(f"rank {entry['rank']} at position {rank}")
            encoded.append(base64.b64decode(entry["token_bytes"], validate=True))
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise TokenizerError(f"{path}: vocab[{rank}] is malformed: {exc}") from None

    special = set(range(n_special))
    if stop_token_ids is None:
        stops = default_stop_ids((), encoded, special)
    else:
        stops = [stop_token_ids] if isinstance(stop_token_ids, int) else [int(i) for i in stop_token_ids]
    encoded, special, stops, vocab_size = fit_to_vocab_size(encoded, special, stops, vocab_size, path)
    info = TokenizerInfo(
        encoded,
        VocabType.RAW,
        vocab_size=vocab_size,
        stop_token_ids=stops,
        special_token_ids=special,
    )
    warn_if_no_stop(info, path)
    return info
