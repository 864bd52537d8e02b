"""The Llama-family transformer (llama, qwen2) over a memory-mapped GGUF, with a KV cache.

``Transformer.forward(tokens)`` runs prefill (several tokens, as matrix products) or decode
(one token, as matrix-vector products) in one Numba call, appends to the KV cache and
returns logits. ``truncate(n)`` rolls the cache back to its first n tokens, so a caller can
drop speculative or forced tokens, or reuse a shared prompt prefix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from numba import njit

from ..errors import ModelFormatError
from . import kernels_cpu as K
from .gguf_file import QUANT_TYPES, GGUFFile, quant_type_name

SUPPORTED_ARCHITECTURES = ("llama", "qwen2")


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters read from GGUF metadata."""

    arch: str
    n_layers: int
    dim: int
    ffn_dim: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    n_rot: int
    rope_base: float
    rope_linear_factor: float
    rope_neox: bool
    norm_eps: float
    context_length: int
    vocab_size: int
    tied_embeddings: bool
    qkv_bias: bool


def read_config(f: GGUFFile) -> ModelConfig:
    """The ModelConfig of a GGUF file; ModelFormatError for unsupported or missing fields."""
    md = f.metadata
    arch = md.get("general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ModelFormatError(
            f"{f.path}: unsupported architecture {arch!r} (supported: "
            f"{', '.join(SUPPORTED_ARCHITECTURES)})"
        )

    def need(key):
        full = f"{arch}.{key}"
        if full not in md:
            raise ModelFormatError(f"{f.path}: missing metadata {full!r}")
        return md[full]

    n_heads = int(need("attention.head_count"))
    n_kv = int(md.get(f"{arch}.attention.head_count_kv", n_heads))
    dim = int(need("embedding_length"))
    head_dim = int(md.get(f"{arch}.attention.key_length", dim // n_heads))
    if n_heads <= 0 or n_kv <= 0 or n_heads % n_kv:
        raise ModelFormatError(
            f"{f.path}: head_count {n_heads} is not a multiple of head_count_kv {n_kv}"
        )
    n_rot = int(md.get(f"{arch}.rope.dimension_count", head_dim))
    if n_rot > head_dim or n_rot % 2:
        raise ModelFormatError(
            f"{f.path}: rope.dimension_count {n_rot} invalid for head size {head_dim}"
        )
    scaling = str(md.get(f"{arch}.rope.scaling.type", "none"))
    factor = float(md.get(f"{arch}.rope.scaling.factor", 1.0) or 1.0)
    if scaling not in ("none", "linear"):
        raise ModelFormatError(f"{f.path}: unsupported RoPE scaling type {scaling!r}")
    emb = f.tensor("token_embd.weight")
    return ModelConfig(
        arch=arch,
        n_layers=int(need("block_count")),
        dim=dim,
        ffn_dim=int(need("feed_forward_length")),
        n_heads=n_heads,
        n_kv_heads=n_kv,
        head_dim=head_dim,
        n_rot=n_rot,
        rope_base=float(md.get(f"{arch}.rope.freq_base", 10000.0)),
        rope_linear_factor=factor if scaling == "linear" else 1.0,
        rope_neox=arch == "qwen2",
        norm_eps=float(md.get(f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)),
        context_length=int(need("context_length")),
        vocab_size=int(emb.shape[0]),
        tied_embeddings="output.weight" not in f.tensors,
        qkv_bias="blk.0.attn_q.bias" in f.tensors,
    )


# Order of the per-layer matrices in the weight table.
_MATRICES = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


class Transformer:
    """A GGUF model ready to run: ``forward(tokens) -> logits`` with a KV cache.

    Parameters: ``path`` of a GGUF file; ``n_ctx``, the most tokens the KV cache may hold
    (default and maximum: the model's context length). The cache grows as tokens arrive
    (doubling), so memory follows the tokens actually used, not ``n_ctx``.
    """

    def __init__(self, path: str | os.PathLike[str], n_ctx: int | None = None):
        self.file = GGUFFile(path)
        self.path = self.file.path
        cfg = self.config = read_config(self.file)
        self._check_and_collect()
        self.n_ctx = min(int(n_ctx or cfg.context_length), cfg.context_length)
        self.k_cache = self.v_cache = np.zeros(
            (cfg.n_layers, cfg.n_kv_heads, 0, cfg.head_dim), np.float32
        )
        self.tokens: list[int] = []  # what the KV cache holds
        self._reserve(min(256, self.n_ctx))

    # -- loading -----------------------------------------------------------------------
    def _matrix(self, name: str, rows: int, cols: int) -> tuple[int, int]:
        t = self.file.tensor(name)
        if t.type_id not in QUANT_TYPES:
            raise ModelFormatError(
                f"{self.path}: tensor {name!r} has quantization type {quant_type_name(t.type_id)},"
                " which this runtime does not support"
            )
        if t.shape != (rows, cols):
            raise ModelFormatError(
                f"{self.path}: tensor {name!r} has shape {t.shape}, expected {(rows, cols)}"
            )
        per = QUANT_TYPES[t.type_id][1]
        if per == 32 and cols % 32 == 0 or per == 1 or cols % per == 0:
            return t.offset, t.type_id
        raise ModelFormatError(
            f"{self.path}: tensor {name!r}: {cols} columns do not fit its blocks"
        )

    def _vector(self, name: str, n: int) -> np.ndarray:
        t = self.file.tensor(name)
        if t.type_id not in QUANT_TYPES or t.shape not in ((n,), (1, n)):
            raise ModelFormatError(
                f"{self.path}: tensor {name!r}: shape {t.shape} type {t.type_name}, expected ({n},)"
            )
        out = np.empty((1, n), np.float32)
        K.dequantize_rows(t.type_id, self.file.data, t.offset, 1, n, out)
        return out[0]

    def _check_and_collect(self) -> None:
        c = self.config
        if c.dim % 32 or c.ffn_dim % 32 or c.head_dim * c.n_heads % 32:
            raise ModelFormatError(f"{self.path}: widths must be multiples of 32")
        q_dim, kv_dim = c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim
        shapes = {
            "attn_q": (q_dim, c.dim),
            "attn_k": (kv_dim, c.dim),
            "attn_v": (kv_dim, c.dim),
            "attn_output": (c.dim, q_dim),
            "ffn_gate": (c.ffn_dim, c.dim),
            "ffn_up": (c.ffn_dim, c.dim),
            "ffn_down": (c.dim, c.ffn_dim),
        }
        L = c.n_layers
        self.layer_w = np.zeros((L, len(_MATRICES), 2), np.int64)
        self.layer_norms = np.zeros((L, 2, c.dim), np.float32)
        self.layer_bias = np.zeros((L, q_dim + 2 * kv_dim), np.float32)
        for i in range(L):
            for j, m in enumerate(_MATRICES):
                self.layer_w[i, j] = self._matrix(f"blk.{i}.{m}.weight", *shapes[m])
            self.layer_norms[i, 0] = self._vector(f"blk.{i}.attn_norm.weight", c.dim)
            self.layer_norms[i, 1] = self._vector(f"blk.{i}.ffn_norm.weight", c.dim)
            if c.qkv_bias:
                self.layer_bias[i, :q_dim] = self._vector(f"blk.{i}.attn_q.bias", q_dim)
                self.layer_bias[i, q_dim : q_dim + kv_dim] = self._vector(
                    f"blk.{i}.attn_k.bias", kv_dim
                )
                self.layer_bias[i, q_dim + kv_dim :] = self._vector(f"blk.{i}.attn_v.bias", kv_dim)
        # (offset, qtype, rows, first output column) of the matrices computed together
        qkv_segs = np.zeros((L, 3, 4), np.int64)
        gate_up_segs = np.zeros((L, 2, 4), np.int64)
        for j, (rows, col) in enumerate(((q_dim, 0), (kv_dim, q_dim), (kv_dim, q_dim + kv_dim))):
            qkv_segs[:, j, :2] = self.layer_w[:, j]
            qkv_segs[:, j, 2:] = rows, col
        for j, col in enumerate((0, c.ffn_dim)):
            gate_up_segs[:, j, :2] = self.layer_w[:, 4 + j]
            gate_up_segs[:, j, 2:] = c.ffn_dim, col
        self.qkv_segs, self.gate_up_segs = qkv_segs, gate_up_segs
        self.embedding = np.array(self._matrix("token_embd.weight", c.vocab_size, c.dim), np.int64)
        out_name = "token_embd.weight" if c.tied_embeddings else "output.weight"
        self.output = np.array(self._matrix(out_name, c.vocab_size, c.dim), np.int64)
        self.output_norm = self._vector("output_norm.weight", c.dim)
        half = c.n_rot // 2
        inv_freq = c.rope_base ** (-np.arange(half, dtype=np.float64) * 2.0 / c.n_rot)
        inv_freq /= c.rope_linear_factor
        if "rope_freqs.weight" in self.file.tensors:  # Llama 3.1-style per-frequency factors
            inv_freq /= self._vector("rope_freqs.weight", half).astype(np.float64)
        self.inv_freq = inv_freq.astype(np.float32)
        self.dims = np.array(
            [L, c.dim, c.ffn_dim, c.n_heads, c.n_kv_heads, c.head_dim, c.vocab_size], np.int64
        )

    def _reserve(self, n: int) -> None:
        """Make room for n positions in the KV cache, keeping the cached ones."""
        cap = self.k_cache.shape[2]
        if n <= cap:
            return
        new_cap = min(self.n_ctx, max(n, 2 * cap))
        c = self.config
        shape = (c.n_layers, c.n_kv_heads, new_cap, c.head_dim)
        k, v = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
        k[:, :, : self.n_past] = self.k_cache[:, :, : self.n_past]
        v[:, :, : self.n_past] = self.v_cache[:, :, : self.n_past]
        self.k_cache, self.v_cache = k, v

    # -- running -----------------------------------------------------------------------
    @property
    def n_past(self) -> int:
        return len(self.tokens)

    def forward(self, tokens, all_logits: bool = False) -> np.ndarray:
        """Feed ``tokens`` after the cached ones; return the logits of the last one ([vocab]),
        or of every new one ([n, vocab]) with ``all_logits``. Raises ValueError if the cache
        would exceed ``n_ctx`` or a token id is out of range."""
        toks = np.asarray(tokens, dtype=np.int64).reshape(-1)
        if toks.size == 0:
            raise ValueError("forward() needs at least one token")
        if self.n_past + toks.size > self.n_ctx:
            raise ValueError(
                f"context overflow: {self.n_past} cached + {toks.size} new tokens > n_ctx "
                f"{self.n_ctx} of {self.path}"
            )
        if toks.min() < 0 or toks.max() >= self.config.vocab_size:
            raise ValueError(f"token id out of range [0, {self.config.vocab_size})")
        self._reserve(self.n_past + toks.size)
        logits = _forward(
            self.file.data,
            self.dims,
            self.layer_w,
            self.qkv_segs,
            self.gate_up_segs,
            self.layer_norms,
            self.layer_bias,
            self.config.qkv_bias,
            self.embedding,
            self.output,
            self.output_norm,
            np.float32(self.config.norm_eps),
            self.inv_freq,
            self.config.rope_neox,
            self.k_cache,
            self.v_cache,
            toks,
            self.n_past,
            all_logits,
        )
        self.tokens.extend(int(t) for t in toks)
        return logits if all_logits else logits[0]

    def truncate(self, n: int) -> None:
        """Roll the KV cache back to its first ``n`` tokens."""
        if not 0 <= n <= self.n_past:
            raise ValueError(f"cannot truncate a cache of {self.n_past} tokens to {n}")
        del self.tokens[n:]

    def reset(self) -> None:
        self.truncate(0)


@njit(cache=True, nogil=True)
def _quant_buffers(n, k):
    return (
        np.empty((n, k), np.int8),
        np.empty((n, k // 32), np.float32),
        np.empty((n, k // 32), np.float32),
    )


@njit(cache=True, nogil=True)
def _forward(
    data,
    dims,
    layer_w,
    qkv_segs,
    gate_up_segs,
    layer_norms,
    layer_bias,
    has_bias,
    embedding,
    output,
    output_norm,
    eps,
    inv_freq,
    neox,
    k_cache,
    v_cache,
    tokens,
    n_past,
    all_logits,
):
    n_layers, dim, ffn, n_heads, n_kv, hd, vocab = dims
    n = tokens.shape[0]
    q_dim = n_heads * hd
    kv_dim = n_kv * hd
    positions = np.arange(n_past, n_past + n)
    x = np.empty((n, dim), np.float32)
    emb_rb = K.row_nbytes(embedding[1], dim)
    for t in range(n):
        K.dequantize_row(embedding[1], data, embedding[0] + tokens[t] * emb_rb, dim, x[t])
    xn = np.empty((n, dim), np.float32)
    xq, xd, xs = _quant_buffers(n, dim)
    aq, ad, as_ = _quant_buffers(n, q_dim)
    fq, fd, fs = _quant_buffers(n, ffn)
    qkv = np.empty((n, q_dim + 2 * kv_dim), np.float32)
    att = np.empty((n, q_dim), np.float32)
    h = np.empty((n, dim), np.float32)
    gate_up = np.empty((n, 2 * ffn), np.float32)
    act = np.empty((n, ffn), np.float32)
    for layer in range(n_layers):
        w = layer_w[layer]
        # attention block
        K.rms_norm(x, layer_norms[layer, 0], eps, xn)
        K.quantize_rows(xn, xq, xd, xs)
        K.matmul_segments(qkv_segs[layer], data, dim, xn, xq, xd, xs, qkv)
        if has_bias:
            for t in range(n):
                qkv[t] += layer_bias[layer]
        K.rope_inplace(qkv, 0, n_heads, hd, positions, inv_freq, neox)
        K.rope_inplace(qkv, q_dim, n_kv, hd, positions, inv_freq, neox)
        for t in range(n):
            for g in range(n_kv):
                for j in range(hd):
                    k_cache[layer, g, n_past + t, j] = qkv[t, q_dim + g * hd + j]
                    v_cache[layer, g, n_past + t, j] = qkv[t, q_dim + kv_dim + g * hd + j]
        K.attention(qkv, n_heads, n_kv, hd, k_cache, v_cache, layer, n_past, att)
        K.quantize_rows(att, aq, ad, as_)
        K.matmul(w[3, 1], data, w[3, 0], dim, q_dim, att, aq, ad, as_, h, 0)
        x += h
        # feed-forward block (SwiGLU)
        K.rms_norm(x, layer_norms[layer, 1], eps, xn)
        K.quantize_rows(xn, xq, xd, xs)
        K.matmul_segments(gate_up_segs[layer], data, dim, xn, xq, xd, xs, gate_up)
        K.swiglu(gate_up, ffn, act)
        K.quantize_rows(act, fq, fd, fs)
        K.matmul(w[6, 1], data, w[6, 0], dim, ffn, act, fq, fd, fs, h, 0)
        x += h
    rows = x if all_logits else x[n - 1 :]
    m = rows.shape[0]
    xn = np.empty((m, dim), np.float32)
    K.rms_norm(rows, output_norm, eps, xn)
    oq, od, os_ = _quant_buffers(m, dim)
    K.quantize_rows(xn, oq, od, os_)
    logits = np.empty((m, vocab), np.float32)
    K.matmul(output[1], data, output[0], vocab, dim, xn, oq, od, os_, logits, 0)
    return logits
