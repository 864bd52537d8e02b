"""The tokenizer and chat template a GGUF file describes, as a ``tokenizers.Tokenizer``.

GGUF stores the vocabulary as metadata: ``tokenizer.ggml.model`` says the algorithm
(``gpt2``: byte-level BPE with a merges list; ``llama``: SentencePiece-style BPE with scores
and byte-fallback tokens), ``tokenizer.ggml.pre`` names the pre-tokenizer split the merges
were learned with, ``token_type`` marks control tokens (matched whole in text).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

from ..errors import TokenizerError

# Split patterns by ``tokenizer.ggml.pre`` (the regexes the models' tokenizers document).
_GPT2_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_PRE_SPLITS = {
    "default": [_GPT2_SPLIT],
    "gpt2": [_GPT2_SPLIT],
    "gpt-2": [_GPT2_SPLIT],
    # SmolLM: every digit on its own, then the GPT-2 split
    "smollm": [r"\p{N}", _GPT2_SPLIT],
    "llama3": [_LLAMA3_SPLIT],
    "llama-bpe": [_LLAMA3_SPLIT],
    "llama-v3": [_LLAMA3_SPLIT],
    "smaug-bpe": [_LLAMA3_SPLIT],
    "qwen2": [_QWEN2_SPLIT],
    "deepseek-r1-qwen": [_QWEN2_SPLIT],
}

_CONTROL, _USER_DEFINED = 3, 4


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map of bytes to printable characters (used by byte-level BPE)."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    )
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def _special_tokens(tokens, types) -> list[AddedToken]:
    out = []
    for tok, typ in zip(tokens, types):
        if typ == _CONTROL:
            out.append(AddedToken(tok, special=True, normalized=False))
        elif typ == _USER_DEFINED:
            out.append(AddedToken(tok, special=False, normalized=False))
    return out


def _byte_level_bpe(md) -> Tokenizer:
    tokens = md["tokenizer.ggml.tokens"]
    merges = md.get("tokenizer.ggml.merges")
    if merges is None:
        raise TokenizerError("GGUF gpt2 tokenizer without tokenizer.ggml.merges")
    vocab = {t: i for i, t in enumerate(tokens)}
    pairs = []
    for k, m in enumerate(merges):
        a, sep, b = m.partition(" ")
        if not sep:
            raise TokenizerError(f"tokenizer.ggml.merges[{k}] is not 'left right': {m!r}")
        pairs.append((a, b))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False, ignore_merges=False))
    pre = md.get("tokenizer.ggml.pre", "default")
    splits = _PRE_SPLITS.get(pre, _PRE_SPLITS["default"])
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(s), behavior="isolated") for s in splits]
        + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    tok.decoder = decoders.ByteLevel()
    return tok


def _sentencepiece_bpe(md) -> Tokenizer:
    """SentencePiece BPE: merges implied by the vocabulary, ranked by the merged piece's score."""
    tokens = md["tokenizer.ggml.tokens"]
    scores = md.get("tokenizer.ggml.scores")
    if scores is None:
        raise TokenizerError("GGUF llama tokenizer without tokenizer.ggml.scores")
    types = md.get("tokenizer.ggml.token_type")
    vocab = {t: i for i, t in enumerate(tokens)}
    normal = [i for i in range(len(tokens)) if types is None or int(types[i]) == 1]
    candidates = []
    for i in normal:
        piece = tokens[i]
        for cut in range(1, len(piece)):
            a, b = piece[:cut], piece[cut:]
            if a in vocab and b in vocab:
                candidates.append((-float(scores[i]), vocab[a], vocab[b], a, b))
    candidates.sort()
    unk_id = int(md.get("tokenizer.ggml.unknown_token_id", 0))
    tok = Tokenizer(
        models.BPE(
            vocab=vocab,
            merges=[(c[3], c[4]) for c in candidates],
            unk_token=tokens[unk_id],
            fuse_unk=True,
            byte_fallback=True,
        )
    )
    norms = [normalizers.Replace(" ", "\u2581")]
    if md.get("tokenizer.ggml.add_space_prefix", True):
        norms.insert(0, normalizers.Prepend("\u2581"))
    tok.normalizer = normalizers.Sequence(norms)
    decs = [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
    if md.get("tokenizer.ggml.add_space_prefix", True):
        decs.append(decoders.Strip(" ", 1, 0))
    tok.decoder = decoders.Sequence(decs)
    return tok


def tokenizer_from_gguf_metadata(md: dict) -> Tokenizer:
    """Build the ``tokenizers.Tokenizer`` a GGUF file's metadata describes.

    Raises TokenizerError for a missing vocabulary or an unsupported ``tokenizer.ggml.model``.
    Control tokens become special added tokens (matched whole in text, skipped when
    decoding with ``skip_special_tokens``). No BOS/EOS is added by ``encode``; the caller
    adds BOS when ``tokenizer.ggml.add_bos_token`` says so (see ``TokenizerInfo``).
    """
    kind = md.get("tokenizer.ggml.model")
    if "tokenizer.ggml.tokens" not in md:
        raise TokenizerError("GGUF file has no tokenizer.ggml.tokens")
    if kind == "gpt2":
        tok = _byte_level_bpe(md)
    elif kind == "llama":
        tok = _sentencepiece_bpe(md)
    else:
        raise TokenizerError(f"unsupported tokenizer.ggml.model {kind!r} (supported: gpt2, llama)")
    types = md.get("tokenizer.ggml.token_type")
    if types is not None:
        tok.add_special_tokens(
            _special_tokens(md["tokenizer.ggml.tokens"], [int(t) for t in types])
        )
    return tok


@dataclass(frozen=True)
class GGUFTokenizerInfo:
    """What generation needs besides the Tokenizer: special ids and the chat template."""

    bos_id: int | None
    eos_id: int | None
    add_bos: bool
    chat_template: str | None
    bos_token: str
    eos_token: str
    eot_ids: tuple[int, ...]  # every id that ends a turn (eos, eot, <|im_end|>...)

    @classmethod
    def from_metadata(cls, md: dict) -> GGUFTokenizerInfo:
        tokens = md["tokenizer.ggml.tokens"]

        def tid(key):
            v = md.get(f"tokenizer.ggml.{key}_token_id")
            return int(v) if v is not None and 0 <= int(v) < len(tokens) else None

        bos, eos = tid("bos"), tid("eos")
        stop = {i for i in (eos, tid("eot"), tid("eom")) if i is not None}
        types = md.get("tokenizer.ggml.token_type")
        for name in ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>"):
            # turn-end markers of common chat formats, when the vocabulary marks them control
            # (<|endoftext|> only when no eos is declared: base models use it as document end)
            if (
                name in tokens
                and types is not None
                and int(types[tokens.index(name)]) == _CONTROL
                and (name != "<|endoftext|>" or eos is None)
            ):
                stop.add(tokens.index(name))
        return cls(
            bos_id=bos,
            eos_id=eos,
            add_bos=bool(md.get("tokenizer.ggml.add_bos_token", False)),
            chat_template=md.get("tokenizer.chat_template"),
            bos_token=tokens[bos] if bos is not None else "",
            eos_token=tokens[eos] if eos is not None else "",
            eot_ids=tuple(sorted(stop)),
        )


def render_chat(
    template: str | None,
    messages: list[dict],
    *,
    bos_token: str = "",
    eos_token: str = "",
    add_generation_prompt: bool = True,
) -> str:
    """Render chat ``messages`` with the model's Jinja chat template (sandboxed).

    Without a template, falls back to ChatML. Raises TokenizerError for malformed messages or
    a template that fails.
    """
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise TokenizerError(f"messages[{i}] must be a dict with 'role' and 'content'")
    if template is None:
        out = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return out + ("<|im_start|>assistant\n" if add_generation_prompt else "")
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise TokenizerError(f"chat template: {message}")

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = lambda v, indent=None: json.dumps(v, ensure_ascii=False, indent=indent)
    env.globals["raise_exception"] = raise_exception
    try:
        return env.from_string(template).render(
            messages=messages,
            bos_token=bos_token,
            eos_token=eos_token,
            add_generation_prompt=add_generation_prompt,
        )
    except TemplateError as e:
        raise TokenizerError(f"chat template failed: {e}") from e
