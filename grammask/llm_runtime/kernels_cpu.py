"""Numba CPU kernels of the runtime: dequantization, quantized matmul, norms, RoPE, attention.

Weights are the raw GGUF bytes (one uint8 array for the whole file, tensors addressed by byte
offset and quantization type id), so nothing is dequantized ahead of time. Activations going
into a 32-block quantized matmul are themselves quantized to int8 per block of 32
(``quantize_rows``) and the dot products run as integer SIMD (see ``simd.py``): Q4_0, Q4_1,
Q5_0, Q5_1 and Q8_0 straight from their blocks (or, for several tokens at once, from a row
unpacked once into bytes), Q4_K and Q5_K from unpacked rows (their 32-element sub-blocks have
one scale and one offset each), Q6_K from unpacked rows with a scale per 16 elements. F16,
BF16 and F32 weights dequantize one row at a time into a float buffer and take float dot
products with the unquantized activations.

Every kernel releases the GIL (a grammar mask can be computed in another thread meanwhile).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .simd import (
    bits_to_float,
    dot_q4_0_row,
    dot_q4_1_row,
    dot_q5_0_row,
    dot_q5_1_row,
    dot_q6_k_unpacked_row,
    dot_q8_0_row,
    dot_unpacked_row,
    half_to_float,
)

# GGUF quantization type ids (see gguf_file.QUANT_TYPES).
F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K, BF16 = 0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 30

_JIT = {"cache": True, "nogil": True}
_JIT_FAST = {"cache": True, "nogil": True, "fastmath": True}


@njit(**_JIT)
def block_shape(qtype):
    """(elements per block, bytes per block) of a supported type; (0, 0) otherwise."""
    if qtype == F32:
        return 1, 4
    if qtype == F16 or qtype == BF16:
        return 1, 2
    if qtype == Q4_0:
        return 32, 18
    if qtype == Q4_1:
        return 32, 20
    if qtype == Q5_0:
        return 32, 22
    if qtype == Q5_1:
        return 32, 24
    if qtype == Q8_0:
        return 32, 34
    if qtype == Q4_K:
        return 256, 144
    if qtype == Q5_K:
        return 256, 176
    if qtype == Q6_K:
        return 256, 210
    return 0, 0


@njit(**_JIT)
def row_nbytes(qtype, ncols):
    per, nbytes = block_shape(qtype)
    return ncols // per * nbytes


@njit(**_JIT)
def has_int8_path(qtype):
    """Types whose matrix products run on int8 activations (the others use float32)."""
    return (
        qtype == Q4_0
        or qtype == Q4_1
        or qtype == Q5_0
        or qtype == Q5_1
        or qtype == Q8_0
        or qtype == Q4_K
        or qtype == Q5_K
    )


@njit(**_JIT)
def _has_fused_row_dot(qtype):
    return qtype == Q4_0 or qtype == Q4_1 or qtype == Q5_0 or qtype == Q5_1 or qtype == Q8_0


# ---------------------------------------------------------------------------------------
# Dequantization (format of each block as GGML defines it)
# ---------------------------------------------------------------------------------------


@njit(inline="always", **_JIT)
def _f16(w, o):
    return half_to_float(np.uint16(np.uint32(w[o]) | (np.uint32(w[o + 1]) << np.uint32(8))))


@njit(inline="always", **_JIT)
def _u32(w, o):
    return (
        np.uint32(w[o])
        | (np.uint32(w[o + 1]) << np.uint32(8))
        | (np.uint32(w[o + 2]) << np.uint32(16))
        | (np.uint32(w[o + 3]) << np.uint32(24))
    )


@njit(inline="always", **_JIT)
def _k_scale_min(s, o, j):
    """6-bit scale and min of sub-block j of a Q4_K/Q5_K super-block (scales at byte o)."""
    if j < 4:
        return np.int32(s[o + j] & 63), np.int32(s[o + j + 4] & 63)
    sc = (s[o + j + 4] & 15) | ((s[o + j - 4] >> 6) << 4)
    m = (s[o + j + 4] >> 4) | ((s[o + j] >> 6) << 4)
    return np.int32(sc), np.int32(m)


@njit(**_JIT_FAST)
def dequantize_row(qtype, w, o, n, y):
    """Dequantize ``n`` elements of type ``qtype`` starting at byte ``o`` of ``w`` into ``y``."""
    if qtype == F32:
        for i in range(n):
            y[i] = bits_to_float(_u32(w, o + 4 * i))
    elif qtype == F16:
        for i in range(n):
            y[i] = _f16(w, o + 2 * i)
    elif qtype == BF16:
        for i in range(n):
            lo = np.uint32(w[o + 2 * i]) | (np.uint32(w[o + 2 * i + 1]) << np.uint32(8))
            y[i] = bits_to_float(lo << np.uint32(16))
    elif qtype == Q8_0:
        for b in range(n // 32):
            bo = o + b * 34
            d = _f16(w, bo)
            for j in range(32):
                y[b * 32 + j] = d * np.float32(np.int8(w[bo + 2 + j]))
    elif qtype == Q4_0 or qtype == Q4_1:
        bsz = 18 if qtype == Q4_0 else 20
        for b in range(n // 32):
            bo = o + b * bsz
            d = _f16(w, bo)
            if qtype == Q4_0:
                m = np.float32(-8.0) * d
                qo = bo + 2
            else:
                m = _f16(w, bo + 2)
                qo = bo + 4
            for j in range(16):
                q = w[qo + j]
                y[b * 32 + j] = d * np.float32(q & 15) + m
                y[b * 32 + j + 16] = d * np.float32(q >> 4) + m
    elif qtype == Q5_0 or qtype == Q5_1:
        bsz = 22 if qtype == Q5_0 else 24
        for b in range(n // 32):
            bo = o + b * bsz
            d = _f16(w, bo)
            if qtype == Q5_0:
                m = np.float32(-16.0) * d
                qh = _u32(w, bo + 2)
                qo = bo + 6
            else:
                m = _f16(w, bo + 2)
                qh = _u32(w, bo + 4)
                qo = bo + 8
            for j in range(16):
                q = np.uint32(w[qo + j])
                lo = (q & np.uint32(15)) | (((qh >> np.uint32(j)) & np.uint32(1)) << np.uint32(4))
                hi = (q >> np.uint32(4)) | (
                    ((qh >> np.uint32(j + 16)) & np.uint32(1)) << np.uint32(4)
                )
                y[b * 32 + j] = d * np.float32(lo) + m
                y[b * 32 + j + 16] = d * np.float32(hi) + m
    elif qtype == Q4_K or qtype == Q5_K:
        bsz = 144 if qtype == Q4_K else 176
        for b in range(n // 256):
            bo = o + b * bsz
            d = _f16(w, bo)
            dmin = _f16(w, bo + 2)
            qo = bo + 16 if qtype == Q4_K else bo + 48
            for c in range(4):
                sc1, m1 = _k_scale_min(w, bo + 4, 2 * c)
                sc2, m2 = _k_scale_min(w, bo + 4, 2 * c + 1)
                d1 = d * np.float32(sc1)
                d2 = d * np.float32(sc2)
                mm1 = dmin * np.float32(m1)
                mm2 = dmin * np.float32(m2)
                base = b * 256 + c * 64
                for l in range(32):
                    q = w[qo + 32 * c + l]
                    lo = np.int32(q & 15)
                    hi = np.int32(q >> 4)
                    if qtype == Q5_K:
                        h = w[bo + 16 + l]
                        lo += 16 * np.int32((h >> (2 * c)) & 1)
                        hi += 16 * np.int32((h >> (2 * c + 1)) & 1)
                    y[base + l] = d1 * np.float32(lo) - mm1
                    y[base + 32 + l] = d2 * np.float32(hi) - mm2
    elif qtype == Q6_K:
        for b in range(n // 256):
            bo = o + b * 210
            d = _f16(w, bo + 208)
            for h in range(2):
                ql = bo + 64 * h
                qh = bo + 128 + 32 * h
                sc = bo + 192 + 8 * h
                base = b * 256 + 128 * h
                for l in range(32):
                    s = l // 16
                    a = w[ql + l]
                    c = w[ql + l + 32]
                    hb = w[qh + l]
                    q1 = np.int32((a & 15) | ((hb & 3) << 4)) - 32
                    q2 = np.int32((c & 15) | (((hb >> 2) & 3) << 4)) - 32
                    q3 = np.int32((a >> 4) | (((hb >> 4) & 3) << 4)) - 32
                    q4 = np.int32((c >> 4) | (((hb >> 6) & 3) << 4)) - 32
                    y[base + l] = d * np.float32(np.int8(w[sc + s])) * np.float32(q1)
                    y[base + l + 32] = d * np.float32(np.int8(w[sc + s + 2])) * np.float32(q2)
                    y[base + l + 64] = d * np.float32(np.int8(w[sc + s + 4])) * np.float32(q3)
                    y[base + l + 96] = d * np.float32(np.int8(w[sc + s + 6])) * np.float32(q4)


@njit(parallel=True, **_JIT)
def dequantize_rows(qtype, w, o, nrows, ncols, out):
    """Dequantize a whole [nrows, ncols] tensor (tests, embeddings of small models)."""
    rb = row_nbytes(qtype, ncols)
    for r in prange(nrows):
        dequantize_row(qtype, w, o + r * rb, ncols, out[r])


# ---------------------------------------------------------------------------------------
# Activations and matmul
# ---------------------------------------------------------------------------------------


@njit(**_JIT_FAST)
def quantize_rows(x, xq, xd, xsum):
    """Quantize each row of x [n, k] to int8 per block of 32 (symmetric, scale amax/127).

    xq [n, k] int8, xd [n, k/32] scale, xsum [n, k/32] = scale * sum of the block's int8s.
    """
    n, k = x.shape
    for t in range(n):
        for b in range(k // 32):
            amax = np.float32(0.0)
            for j in range(32):
                amax = max(amax, abs(x[t, b * 32 + j]))
            d = amax / np.float32(127.0)
            inv = np.float32(1.0) / d if d > 0 else np.float32(0.0)
            s = 0
            for j in range(32):
                q = np.int32(np.rint(x[t, b * 32 + j] * inv))
                xq[t, b * 32 + j] = q
                s += q
            xd[t, b] = d
            xsum[t, b] = d * np.float32(s)


@njit(inline="always", **_JIT)
def _int8_row_dot(qtype, w, o, xq, xd, xsum, nb):
    if qtype == Q4_1:
        return dot_q4_1_row(w, o, xq, xd, xsum, nb)
    if qtype == Q8_0:
        return dot_q8_0_row(w, o, xq, xd, xsum, nb)
    if qtype == Q4_0:
        return dot_q4_0_row(w, o, xq, xd, xsum, nb)
    if qtype == Q5_0:
        return dot_q5_0_row(w, o, xq, xd, xsum, nb)
    return dot_q5_1_row(w, o, xq, xd, xsum, nb)


@njit(**_JIT_FAST)
def unpack_row_u8(qtype, w, o, nb, q, wd, wc):
    """Spread an int8-path row into unsigned quants ``q`` (32 per block), block scales
    ``wd`` and offset coefficients ``wc``, so that weight j of block b is
    ``wd[b] * q[32 b + j] + wc[b]``. (Q4_K/Q5_K sub-blocks of 32 fit this form exactly:
    scale d * sc, offset -dmin * m.)"""
    if qtype == Q4_K or qtype == Q5_K:
        bsz = 144 if qtype == Q4_K else 176
        for sb in range(nb // 8):
            bo = o + sb * bsz
            d = _f16(w, bo)
            dmin = _f16(w, bo + 2)
            qo = bo + 16 if qtype == Q4_K else bo + 48
            for c in range(4):
                for half in range(2):
                    sc, m = _k_scale_min(w, bo + 4, 2 * c + half)
                    b = sb * 8 + 2 * c + half
                    wd[b] = d * np.float32(sc)
                    wc[b] = -dmin * np.float32(m)
                    for j in range(32):
                        v = w[qo + 32 * c + j]
                        v = v >> np.uint8(4) if half else v & np.uint8(15)
                        if qtype == Q5_K:
                            hbit = (w[bo + 16 + j] >> np.uint8(2 * c + half)) & np.uint8(1)
                            v |= hbit << np.uint8(4)
                        q[b * 32 + j] = v
        return
    for b in range(nb):
        if qtype == Q8_0:
            bo = o + b * 34
            d = _f16(w, bo)
            wd[b] = d
            wc[b] = np.float32(-128.0) * d
            for j in range(32):
                q[b * 32 + j] = w[bo + 2 + j] ^ np.uint8(128)
            continue
        if qtype == Q4_0:
            bo = o + b * 18
            d = _f16(w, bo)
            c = np.float32(-8.0) * d
            qo = bo + 2
        elif qtype == Q4_1:
            bo = o + b * 20
            d = _f16(w, bo)
            c = _f16(w, bo + 2)
            qo = bo + 4
        elif qtype == Q5_0:
            bo = o + b * 22
            d = _f16(w, bo)
            c = np.float32(-16.0) * d
            qo = bo + 6
        else:
            bo = o + b * 24
            d = _f16(w, bo)
            c = _f16(w, bo + 2)
            qo = bo + 8
        wd[b] = d
        wc[b] = c
        for j in range(16):
            v = w[qo + j]
            q[b * 32 + j] = v & np.uint8(15)
            q[b * 32 + j + 16] = v >> np.uint8(4)
        if qtype == Q5_0 or qtype == Q5_1:
            qh = _u32(w, qo - 4)
            for j in range(32):
                q[b * 32 + j] |= np.uint8(((qh >> np.uint32(j)) & np.uint32(1)) << np.uint32(4))


@njit(**_JIT_FAST)
def unpack_row_q6_k(w, o, nb, q, wd16):
    """Spread a Q6_K row into unsigned 6-bit quants ``q`` and a scale per 16 elements, so
    that weight j is ``wd16[j // 16] * (q[j] - 32)`` (``nb`` blocks of 32)."""
    for sb in range(nb // 8):
        bo = o + sb * 210
        d = _f16(w, bo + 208)
        for g in range(16):
            wd16[sb * 16 + g] = d * np.float32(np.int8(w[bo + 192 + g]))
        for h in range(2):
            ql = bo + 64 * h
            qh = bo + 128 + 32 * h
            base = sb * 256 + 128 * h
            for j in range(32):
                a = w[ql + j]
                c = w[ql + j + 32]
                hb = w[qh + j]
                q[base + j] = (a & np.uint8(15)) | ((hb & np.uint8(3)) << np.uint8(4))
                q[base + j + 32] = (c & np.uint8(15)) | (
                    ((hb >> np.uint8(2)) & np.uint8(3)) << np.uint8(4)
                )
                q[base + j + 64] = (a >> np.uint8(4)) | (
                    ((hb >> np.uint8(4)) & np.uint8(3)) << np.uint8(4)
                )
                q[base + j + 96] = (c >> np.uint8(4)) | (
                    ((hb >> np.uint8(6)) & np.uint8(3)) << np.uint8(4)
                )


# From this many activation rows on, a weight row is unpacked once and reused.
_UNPACK_MIN_ROWS = 16


@njit(parallel=True, **_JIT_FAST)
def matmul_segments(segs, w, ncols, x, xq, xd, xsum, out):
    """Several matrix products sharing one input, in one parallel loop.

    ``segs[s] = (byte offset, qtype, nrows, out_col0)`` describes weight matrix s of shape
    [nrows, ncols]; ``out[t, out_col0 + r] = W_s[r] . x[t]``. (Q, K and V are one call, gate
    and up another: fewer thread wake-ups per layer.) For int8-path types ``xq/xd/xsum`` must
    hold ``quantize_rows(x)``; the other types read ``x`` (float32). Each thread streams its
    weight rows once and reuses each against all n activation rows (prefill is a matrix
    product).
    """
    n = x.shape[0]
    nb = ncols // 32
    total = 0
    for s in range(segs.shape[0]):
        total += segs[s, 2]
    for g in prange(total):
        s = 0
        first = 0  # first global row of segment s
        while g - first >= segs[s, 2]:
            first += segs[s, 2]
            s += 1
        r = g - first
        qtype = segs[s, 1]
        ro = segs[s, 0] + r * row_nbytes(qtype, ncols)
        col = segs[s, 3] + r
        if qtype == Q6_K:
            q6 = np.empty(ncols, np.uint8)
            wd16 = np.empty(2 * nb, np.float32)
            unpack_row_q6_k(w, ro, nb, q6, wd16)
            for t in range(n):
                out[t, col] = dot_q6_k_unpacked_row(q6, wd16, xq[t], xd[t], nb)
        elif has_int8_path(qtype) and (n >= _UNPACK_MIN_ROWS or not _has_fused_row_dot(qtype)):
            q = np.empty(ncols, np.uint8)
            wd = np.empty(nb, np.float32)
            wc = np.empty(nb, np.float32)
            unpack_row_u8(qtype, w, ro, nb, q, wd, wc)
            for t in range(n):
                out[t, col] = dot_unpacked_row(q, wd, wc, xq[t], xd[t], xsum[t], nb)
        elif has_int8_path(qtype):
            for t in range(n):
                out[t, col] = _int8_row_dot(qtype, w, ro, xq[t], xd[t], xsum[t], nb)
        else:
            buf = np.empty(ncols, np.float32)
            dequantize_row(qtype, w, ro, ncols, buf)
            for t in range(n):
                acc = np.float32(0.0)
                for j in range(ncols):
                    acc += buf[j] * x[t, j]
                out[t, col] = acc


@njit(**_JIT)
def matmul(qtype, w, wofs, nrows, ncols, x, xq, xd, xsum, out, out_col0):
    """out[t, out_col0 + r] = W[r] . x[t] for the [nrows, ncols] weight W at byte ``wofs``
    (see ``matmul_segments``)."""
    segs = np.empty((1, 4), np.int64)
    segs[0, 0] = wofs
    segs[0, 1] = qtype
    segs[0, 2] = nrows
    segs[0, 3] = out_col0
    matmul_segments(segs, w, ncols, x, xq, xd, xsum, out)


# ---------------------------------------------------------------------------------------
# Elementwise and attention
# ---------------------------------------------------------------------------------------


@njit(**_JIT_FAST)
def rms_norm(x, weight, eps, out):
    """out[t] = x[t] / sqrt(mean(x[t]^2) + eps) * weight."""
    n, k = x.shape
    for t in range(n):
        ss = np.float32(0.0)
        for j in range(k):
            ss += x[t, j] * x[t, j]
        scale = np.float32(1.0) / np.sqrt(ss / np.float32(k) + np.float32(eps))
        for j in range(k):
            out[t, j] = x[t, j] * scale * weight[j]


@njit(**_JIT)
def rope_inplace(x, col0, n_heads, head_dim, positions, inv_freq, neox):
    """Rotate the first 2*len(inv_freq) dims of each head of x[t, col0:...] by position.

    ``neox``: pairs (i, i + n_rot/2) (GPT-NeoX/Qwen2 layout); otherwise adjacent pairs
    (2i, 2i+1), the layout llama.cpp's converter gives Llama Q/K rows in GGUF files.
    """
    half = inv_freq.shape[0]
    for t in range(x.shape[0]):
        p = np.float64(positions[t])
        for i in range(half):
            theta = p * np.float64(inv_freq[i])
            c = np.float32(np.cos(theta))
            s = np.float32(np.sin(theta))
            for h in range(n_heads):
                base = col0 + h * head_dim
                if neox:
                    a = base + i
                    b = base + i + half
                else:
                    a = base + 2 * i
                    b = a + 1
                x0 = x[t, a]
                x1 = x[t, b]
                x[t, a] = x0 * c - x1 * s
                x[t, b] = x0 * s + x1 * c


@njit(**_JIT_FAST)
def _attend(th, qkv, n_heads, group, head_dim, k_cache, v_cache, layer, n_past, scale, out):
    """One (token, head) pair: softmax(q . K / sqrt(d)) . V over positions 0..n_past+t."""
    t = th // n_heads
    h = th % n_heads
    q0 = h * head_dim
    n_keys = n_past + t + 1
    # contiguous 1-D views keep the inner loops free of 4-D index arithmetic (they vectorize)
    q = qkv[t, q0 : q0 + head_dim]
    keys = k_cache[layer, h // group]
    values = v_cache[layer, h // group]
    scores = np.empty(n_keys, np.float32)
    m = np.float32(-np.inf)
    for p in range(n_keys):
        k = keys[p]
        s = np.float32(0.0)
        for j in range(head_dim):
            s += q[j] * k[j]
        s *= scale
        scores[p] = s
        m = max(m, s)
    total = np.float32(0.0)
    for p in range(n_keys):
        e = np.exp(scores[p] - m)
        scores[p] = e
        total += e
    acc = np.zeros(head_dim, np.float32)
    for p in range(n_keys):
        v = values[p]
        wgt = scores[p]
        for j in range(head_dim):
            acc[j] += wgt * v[j]
    inv = np.float32(1.0) / total
    for j in range(head_dim):
        out[t, q0 + j] = acc[j] * inv


@njit(parallel=True, **_JIT_FAST)
def attention(qkv, n_heads, n_kv_heads, head_dim, k_cache, v_cache, layer, n_past, out):
    """Causal attention of n new tokens (rows of qkv: [q | k | v]) over the KV cache.

    The new keys and values must already be in the cache at positions n_past..n_past+n-1.
    Query head h reads KV head h // (n_heads / n_kv_heads) (grouped-query attention).
    (token, head) pairs are spread over threads only when there is enough work to pay for
    waking them: a decode step over a short context is faster on one thread.
    """
    n = qkv.shape[0]
    group = n_heads // n_kv_heads
    scale = np.float32(1.0 / np.sqrt(head_dim))
    work = n * n_heads * (n_past + n) * head_dim
    if work >= 1 << 18:
        for th in prange(n * n_heads):
            _attend(th, qkv, n_heads, group, head_dim, k_cache, v_cache, layer, n_past, scale, out)
    else:
        for th in range(n * n_heads):
            _attend(th, qkv, n_heads, group, head_dim, k_cache, v_cache, layer, n_past, scale, out)


@njit(**_JIT_FAST)
def swiglu(gate_up, ffn, out):
    """out = silu(gate) * up, gate_up rows are [gate | up]."""
    for t in range(gate_up.shape[0]):
        for j in range(ffn):
            g = gate_up[t, j]
            out[t, j] = g / (np.float32(1.0) + np.exp(-g)) * gate_up[t, ffn + j]
