"""A float64 numpy forward pass of the llama/qwen2 block, the oracle for the Numba runtime.

It reads tensors with the `gguf` package's own reader and dequantizer, so it shares no code
with grammask.llm_runtime beyond the metadata conventions it is checking.
"""

from __future__ import annotations

import numpy as np
import gguf


def _field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    return f.contents()


class ReferenceModel:
    def __init__(self, path):
        r = gguf.GGUFReader(path)
        self.arch = arch = _field(r, "general.architecture")
        self.w = {}
        for t in r.tensors:
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
            q, k, v = (h @ W[p + f"attn_{m}.weight"].T for m in "qkv")
            if p + "attn_q.bias" in W:
                q, k, v = q + W[p + "attn_q.bias"], k + W[p + "attn_k.bias"], v + W[p + "attn_v.bias"]
            q = self._rope(q.reshape(n, H, hd), pos)
            k = self._rope(k.reshape(n, G, hd), pos)
            v = v.reshape(n, G, hd)
            rep = H // G
            k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
            s = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(hd) + mask
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            o = np.einsum("hqk,khd->qhd", s, v).reshape(n, H * hd)
            x = x + o @ W[p + "attn_output.weight"].T
            h = self._rms(x, W[p + "ffn_norm.weight"])
            g, u = h @ W[p + "ffn_gate.weight"].T, h @ W[p + "ffn_up.weight"].T
            x = x + (g / (1 + np.exp(-g)) * u) @ W[p + "ffn_down.weight"].T
        x = self._rms(x, W["output_norm.weight"])
        out = W.get("output.weight", W["token_embd.weight"])
        return x @ out.T
