"""A float64 numpy forward pass of the llama/qwen2 block, the oracle for the Numba runtime.

It reads tensors with the `gguf` package's own reader and dequantizer, so it shares no code
with grammask.llm_runtime beyond the metadata conventions it is checking.
"""

from __future__ import annotations

import gguf
import numpy as np


def _field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    return f.contents()


_INT8_TYPES = {"Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"}


def quantize_activations(x):
    """Round rows of x to int8 per block of 32 (scale amax/127), back in float64.

    The scale and the rounding are computed in float32 like the runtime's kernel, so that
    both round the same values the same way."""
    b = x.astype(np.float32).reshape(*x.shape[:-1], -1, 32)
    d = np.abs(b).max(axis=-1, keepdims=True) / np.float32(127.0)
    inv = np.divide(np.float32(1.0), d, out=np.zeros_like(d), where=d > 0)
    q = np.rint(b * inv)
    return (q.astype(np.float64) * d).reshape(x.shape)


class ReferenceModel:
    """``emulate_int8``: quantize the inputs of matrices whose type has the runtime's int8
    path, as the runtime does, so that the comparison isolates everything else."""

    def __init__(self, path, emulate_int8=False):
        r = gguf.GGUFReader(path)
        self.arch = arch = _field(r, "general.architecture")
        self.w = {}
        self.types = {}
        self.emulate_int8 = emulate_int8
        for t in r.tensors:
            self.types[t.name] = t.tensor_type.name
            a = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64)
            shape = tuple(int(d) for d in reversed(t.shape.tolist()))
            self.w[t.name] = a.reshape(shape)
        self.n_layers = _field(r, f"{arch}.block_count")
        self.n_heads = _field(r, f"{arch}.attention.head_count")
        self.n_kv = _field(r, f"{arch}.attention.head_count_kv", self.n_heads)
        self.dim = _field(r, f"{arch}.embedding_length")
        self.head_dim = self.dim // self.n_heads
        self.n_rot = _field(r, f"{arch}.rope.dimension_count", self.head_dim)
        self.base = _field(r, f"{arch}.rope.freq_base", 10000.0)
        self.eps = _field(r, f"{arch}.attention.layer_norm_rms_epsilon")
        self.linear = 1.0
        if _field(r, f"{arch}.rope.scaling.type", "none") == "linear":
            self.linear = _field(r, f"{arch}.rope.scaling.factor")
        self.neox = arch == "qwen2"

    def _mm(self, x, name):
        if self.emulate_int8 and self.types[name] in _INT8_TYPES:
            x = quantize_activations(x)
        return x @ self.w[name].T

    def _rms(self, x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def _rope(self, x, pos):
        # x: [n, heads, head_dim]
        half = self.n_rot // 2
        inv = self.base ** (-np.arange(half) * 2.0 / self.n_rot) / self.linear
        if "rope_freqs.weight" in self.w:
            inv = inv / self.w["rope_freqs.weight"]
        ang = pos[:, None] * inv[None, :]
        c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        x = x.copy()
        if self.neox:
            a, b = x[..., :half].copy(), x[..., half : 2 * half].copy()
            x[..., :half], x[..., half : 2 * half] = a * c - b * s, a * s + b * c
        else:
            a, b = x[..., 0 : 2 * half : 2].copy(), x[..., 1 : 2 * half : 2].copy()
            x[..., 0 : 2 * half : 2], x[..., 1 : 2 * half : 2] = a * c - b * s, a * s + b * c
        return x

    def logits(self, tokens):
        """Logits [n, vocab] of every position of a token sequence (no cache)."""
        W = self.w
        n = len(tokens)
        hd, H, G = self.head_dim, self.n_heads, self.n_kv
        x = W["token_embd.weight"][np.asarray(tokens)]
        pos = np.arange(n, dtype=np.float64)
        mask = np.triu(np.full((n, n), -np.inf), 1)
        for i in range(self.n_layers):
            p = f"blk.{i}."
            h = self._rms(x, W[p + "attn_norm.weight"])
            q, k, v = (self._mm(h, p + f"attn_{m}.weight") for m in "qkv")
            if p + "attn_q.bias" in W:
                q, k, v = (
                    q + W[p + "attn_q.bias"],
                    k + W[p + "attn_k.bias"],
                    v + W[p + "attn_v.bias"],
                )
            q = self._rope(q.reshape(n, H, hd), pos)
            k = self._rope(k.reshape(n, G, hd), pos)
            v = v.reshape(n, G, hd)
            rep = H // G
            k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
            s = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(hd) + mask
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            o = np.einsum("hqk,khd->qhd", s, v).reshape(n, H * hd)
            x = x + self._mm(o, p + "attn_output.weight")
            h = self._rms(x, W[p + "ffn_norm.weight"])
            g, u = self._mm(h, p + "ffn_gate.weight"), self._mm(h, p + "ffn_up.weight")
            with np.errstate(over="ignore"):  # exp(-g) -> inf is silu(g) -> 0, fine
                act = g / (1 + np.exp(-g)) * u
            x = x + self._mm(act, p + "ffn_down.weight")
        x = self._rms(x, W["output_norm.weight"])
        return self._mm(x, "output.weight" if "output.weight" in W else "token_embd.weight")
