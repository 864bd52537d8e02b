"""Shared steps of the tokenizer converters: fitting a model's vocab_size, choosing stop ids,
and checking decoded bytes against a tokenizer's own decode."""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable, Iterable, Sequence

from ..automata.tokenizer_info import KNOWN_END_TOKENS, TokenizerInfo, VocabType
from ..errors import TokenizerError

__all__ = ["default_stop_ids", "fit_to_vocab_size", "verify_against_decode", "warn_if_no_stop"]


def default_stop_ids(
    declared: Iterable[int | None], encoded: Sequence[str | bytes], candidates: Iterable[int]
) -> list[int]:
    """The detection rule of the converters: the tokenizer's declared eos ids, then every
    candidate id (its special and added tokens) spelled like a known end token, in id order."""
    out = [int(i) for i in declared if i is not None and int(i) >= 0]
    known = set(KNOWN_END_TOKENS)
    for i in sorted(set(candidates)):
        tok = encoded[i] if i < len(encoded) else ""
        text = tok if isinstance(tok, str) else bytes(tok).decode("utf-8", "replace")
        if text in known and i not in out:
            out.append(i)
    return out


def fit_to_vocab_size(
    encoded: list[str | bytes],
    special: set[int],
    stops: list[int],
    vocab_size: int | None,
    source: str,
) -> tuple[list[str | bytes], set[int], list[int], int]:
    """Cut the vocabulary to a smaller model vocab_size, which is allowed only when every id
    cut off is special (the model cannot emit them anyway); a larger one is padding."""
    if vocab_size is None:
        return encoded, special, stops, len(encoded)
    vocab_size = int(vocab_size)
    if vocab_size >= len(encoded):
        return encoded, special, stops, vocab_size
    cut_regular = [i for i in range(vocab_size, len(encoded)) if i not in special]
    if cut_regular:
        i = cut_regular[0]
        raise TokenizerError(
            f"{source}: vocab_size {vocab_size} is smaller than the tokenizer's {len(encoded)} "
            f"tokens and would cut off regular token {i} ({encoded[i]!r})"
        )
    return (
        encoded[:vocab_size],
        {i for i in special if i < vocab_size},
        [i for i in stops if i < vocab_size],
        vocab_size,
    )


def warn_if_no_stop(info: TokenizerInfo, source: str) -> None:
    if not info.stop_token_ids:
        warnings.warn(
            f"{source}: no stop token found (no eos id, no known end token); pass "
            "stop_token_ids=... or match with terminate_without_stop_token=True",
            stacklevel=3,
        )


def _anchor(info: TokenizerInfo) -> int | None:
    """A regular token that decodes to one ASCII letter: put first in every checked sequence,
    it keeps decoders that strip a leading space (SentencePiece, Metaspace, Strip) from
    touching the tokens under test."""
    decoded = info.decoded_vocab
    for want in (b"a", b"e", b"x", b"A"):
        try:
            return decoded.index(want)
        except ValueError:
            continue
    for i, b in enumerate(decoded):
        if len(b) == 1 and b.isalpha():
            return i
    return None


def _byte_token_sequences(byte_ids: dict[int, int]) -> list[list[int]]:
    """Valid UTF-8 sequences of byte-fallback tokens that use every byte that can occur in
    valid UTF-8 (0x00-0x7F alone; every continuation byte after 0xC2; every lead byte)."""
    seqs: list[bytes] = [bytes((b,)) for b in range(0x20, 0x7F)] + [b"\n", b"\t"]
    seqs += [bytes((0xC2, c)) for c in range(0x80, 0xC0)]
    seqs += [bytes((lead, 0x80)) for lead in range(0xC2, 0xE0)]
    seqs += [b"\xe0\xa0\x80", b"\xed\x80\x80"]
    seqs += [bytes((lead, 0x80, 0x80)) for lead in range(0xE1, 0xF0) if lead != 0xED]
    seqs += [b"\xf0\x90\x80\x80"] + [bytes((lead, 0x80, 0x80, 0x80)) for lead in (0xF1, 0xF2, 0xF3, 0xF4)]
    out = []
    for s in seqs:
        if all(b in byte_ids for b in s):
            out.append([byte_ids[b] for b in s])
    return out


def verify_against_decode(
    info: TokenizerInfo,
    decode: Callable[[list[int]], str],
    source: str,
    *,
    must_check: Iterable[int] = (),
    sample_size: int = 2048,
    chunk: int = 64,
    seed: int = 0,
) -> None:
    """Check that decoded_vocab agrees with the tokenizer's own ``decode``.

    A seeded sample of regular tokens (plus ``must_check``) is decoded in chunks, each behind
    an anchor token, and compared with the concatenated bytes (read as UTF-8 with
    replacement, which is how byte-level decoders show a cut character). Byte-fallback
    tokens are checked in valid UTF-8 sequences. On a mismatch the offending token is found
    and named.

    Raises:
        TokenizerError: naming the token id, its spelling, the bytes derived here and the
            tokenizer's text.
    """
    decoded = info.decoded_vocab
    encoded = info.encoded_vocab
    special = set(info.special_token_ids)
    anchor = _anchor(info)
    head = [anchor] if anchor is not None else []
    head_bytes = decoded[anchor] if anchor is not None else b""

    regular = [i for i in range(len(encoded)) if i not in special]
    byte_ids: dict[int, int] = {}
    if info.vocab_type == VocabType.BYTE_FALLBACK:
        # Byte tokens alone are not valid UTF-8: they are checked in whole characters below.
        for i in regular:
            tok = encoded[i]
            if isinstance(tok, str) and len(tok) == 6 and tok.startswith("<0x") and len(decoded[i]) == 1:
                byte_ids.setdefault(decoded[i][0], i)
        taken = set(byte_ids.values())
        regular = [i for i in regular if i not in taken]

    rng = random.Random(seed)
    sample = rng.sample(regular, min(sample_size, len(regular)))
    extra = [i for i in must_check if i not in special]
    ids = extra + sample
    groups = [ids[k : k + chunk] for k in range(0, len(ids), chunk)]
    groups += _byte_token_sequences(byte_ids)

    for group in groups:
        expected = (head_bytes + b"".join(decoded[i] for i in group)).decode("utf-8", "replace")
        got = decode(head + group)
        if got != expected:
            _report(info, decode, group, head, head_bytes, source, got, expected)


def _report(info, decode, group, head, head_bytes, source, got, expected) -> None:
    decoded = info.decoded_vocab
    encoded = info.encoded_vocab
    how = f"as {info.vocab_type.name} it gives"
    for i in group:
        try:
            want = (head_bytes + decoded[i]).decode("utf-8")
        except UnicodeDecodeError:
            continue
        alone = decode(head + [i])
        if alone != want:
            shown = alone[len(head_bytes) :] if alone.startswith(want[: len(head_bytes)]) else alone
            raise TokenizerError(
                f"{source}: token {i} ({encoded[i]!r}): {how} {decoded[i]!r}, but the "
                f"tokenizer decodes it as {shown!r}"
            )
    spellings = [encoded[i] for i in group[:6]]
    raise TokenizerError(
        f"{source}: tokens {group[:6]}{'...' if len(group) > 6 else ''} ({spellings!r}...): "
        f"{how} {expected[:80]!r}, but the tokenizer decodes them as {got[:80]!r}"
    )
