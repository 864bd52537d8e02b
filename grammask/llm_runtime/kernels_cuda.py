"""numba.cuda kernels of the runtime: quantized matrix products with dequantization inside,
RMSNorm (fused into the products that read normalized activations), RoPE with the KV-cache
write, attention over the cache (grouped-query), SwiGLU (fused into the gate/up product),
embedding lookup and argmax.

Weights are one uint8 device array (``w8``) holding the raw GGUF bytes of every tensor, with
float16 and float32 views of the same memory (``w16``, ``w32``) for block scales and float
tensors; a tensor is addressed by byte offset and GGUF type id, as on the CPU side
(``kernels_cpu``). Supported: F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K (BF16
is converted to F32 when uploaded). Activations stay float32: the GPU is limited by memory
traffic and launch cost, not by multiplies, so nothing is gained by quantizing them.

A row of weights is read in "octets": 8 quants that one thread dequantizes together (4 bytes
of a 4-bit block, 8 bytes of Q8_0...). ``octet`` returns them with the column of the first;
the others follow a per-type pattern (``octet_layout``). A matrix product gives each output
row a group of ``lanes`` threads (a power of two) that split the row's octets and add their
partial sums with a shared-memory tree; a block holds ``blockDim.x // lanes`` rows. The
geometry is chosen at launch time (``lanes`` is an argument), and the kernels synchronize
only with ``syncthreads`` and shared memory (no warp shuffles), so Numba's CUDA simulator
runs exactly this code on small blocks.

Everything that changes from one decode step to the next (the position, the tokens) is read
from device memory (``ctrl``: position, then the tokens), never passed as an argument: a
recorded sequence of launches, or a CUDA graph captured from it, stays valid for every token.
"""

from __future__ import annotations

import math

from numba import cuda, float32, int32, int64

# GGUF type ids (as in kernels_cpu).
F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K = 0, 1, 2, 3, 6, 7, 8, 12, 13, 14

MAX_TOKENS = 16  # tokens one launch processes (prefill runs in chunks of this many)
MAX_THREADS = 128  # threads per block, upper bound (sizes the shared arrays)
MAX_HEAD_DIM = 256
NEG_BIG = -3.0e38  # finite stand-in for -inf inside softmax (no inf arithmetic)


# ---------------------------------------------------------------------------------------
# Dequantization of one octet
# ---------------------------------------------------------------------------------------


@cuda.jit(device=True, inline=True)
def _f16(w16, o):
    return float32(w16[o >> 1])


@cuda.jit(device=True, inline=True)
def _u8(w8, o):
    return int32(w8[o])


@cuda.jit(device=True, inline=True)
def _i8(w8, o):
    q = int32(w8[o])
    return q - 256 if q > 127 else q


@cuda.jit(device=True, inline=True)
def _u32(w8, o):
    return (
        int64(w8[o])
        | (int64(w8[o + 1]) << 8)
        | (int64(w8[o + 2]) << 16)
        | (int64(w8[o + 3]) << 24)
    )


@cuda.jit(device=True, inline=True)
def _k_scale_min(w8, o, j):
    """6-bit scale and min of sub-block j of a Q4_K/Q5_K super-block (scales at byte o)."""
    if j < 4:
        return _u8(w8, o + j) & 63, _u8(w8, o + j + 4) & 63
    sc = (_u8(w8, o + j + 4) & 15) | ((_u8(w8, o + j - 4) >> 6) << 4)
    m = (_u8(w8, o + j + 4) >> 4) | ((_u8(w8, o + j) >> 6) << 4)
    return sc, m


@cuda.jit(device=True, inline=True)
def octet_layout(qtype):
    """(run, gap): value k of an octet sits at column c0 + k % run + (k // run) * gap."""
    if qtype == Q4_0 or qtype == Q4_1 or qtype == Q5_0 or qtype == Q5_1:
        return 4, 16
    if qtype == Q4_K or qtype == Q5_K:
        return 4, 32
    if qtype == Q6_K:
        return 2, 32
    return 8, 0


@cuda.jit(device=True)
def octet(qtype, w8, w16, w32, ro, j, v):
    """Dequantize octet ``j`` of the row starting at byte ``ro`` into ``v[0:8]``; return the
    column of ``v[0]`` (see ``octet_layout`` for the others)."""
    if qtype == F32:
        c0 = 8 * j
        base = (ro >> 2) + c0
        for k in range(8):
            v[k] = w32[base + k]
        return c0
    if qtype == F16:
        c0 = 8 * j
        base = (ro >> 1) + c0
        for k in range(8):
            v[k] = float32(w16[base + k])
        return c0
    if qtype == Q8_0:
        b = j >> 2
        u = j & 3
        bo = ro + 34 * b
        d = _f16(w16, bo)
        for k in range(8):
            v[k] = d * float32(_i8(w8, bo + 2 + 8 * u + k))
        return 32 * b + 8 * u
    if qtype == Q4_0 or qtype == Q4_1 or qtype == Q5_0 or qtype == Q5_1:
        b = j >> 2
        u = j & 3
        qh = int64(0)
        if qtype == Q4_0:
            bo = ro + 18 * b
            d = _f16(w16, bo)
            m = float32(-8.0) * d
            qo = bo + 2
        elif qtype == Q4_1:
            bo = ro + 20 * b
            d = _f16(w16, bo)
            m = _f16(w16, bo + 2)
            qo = bo + 4
        elif qtype == Q5_0:
            bo = ro + 22 * b
            d = _f16(w16, bo)
            m = float32(-16.0) * d
            qh = _u32(w8, bo + 2)
            qo = bo + 6
        else:
            bo = ro + 24 * b
            d = _f16(w16, bo)
            m = _f16(w16, bo + 2)
            qh = _u32(w8, bo + 4)
            qo = bo + 8
        for i in range(4):
            e = 4 * u + i
            q = _u8(w8, qo + e)
            lo = q & 15
            hi = q >> 4
            if qtype == Q5_0 or qtype == Q5_1:
                lo |= int32((qh >> e) & 1) << 4
                hi |= int32((qh >> (e + 16)) & 1) << 4
            v[i] = d * float32(lo) + m
            v[4 + i] = d * float32(hi) + m
        return 32 * b + 4 * u
    if qtype == Q4_K or qtype == Q5_K:
        sb = j >> 5
        c = (j & 31) >> 3
        u = j & 7
        bsz = 144 if qtype == Q4_K else 176
        bo = ro + bsz * sb
        d = _f16(w16, bo)
        dmin = _f16(w16, bo + 2)
        sc1, m1 = _k_scale_min(w8, bo + 4, 2 * c)
        sc2, m2 = _k_scale_min(w8, bo + 4, 2 * c + 1)
        d1 = d * float32(sc1)
        d2 = d * float32(sc2)
        mm1 = dmin * float32(m1)
        mm2 = dmin * float32(m2)
        qo = bo + 16 if qtype == Q4_K else bo + 48
        for i in range(4):
            el = 4 * u + i
            q = _u8(w8, qo + 32 * c + el)
            lo = q & 15
            hi = q >> 4
            if qtype == Q5_K:
                h = _u8(w8, bo + 16 + el)
                lo += 16 * ((h >> (2 * c)) & 1)
                hi += 16 * ((h >> (2 * c + 1)) & 1)
            v[i] = d1 * float32(lo) - mm1
            v[4 + i] = d2 * float32(hi) - mm2
        return 256 * sb + 64 * c + 4 * u
    # Q6_K
    sb = j >> 5
    h = (j & 31) >> 4
    vv = j & 15
    bo = ro + 210 * sb
    d = _f16(w16, bo + 208)
    ql = bo + 64 * h
    qh = bo + 128 + 32 * h
    sc = bo + 192 + 8 * h
    s = vv >> 3  # (2 vv) // 16
    for i in range(2):
        el = 2 * vv + i
        a = _u8(w8, ql + el)
        cc = _u8(w8, ql + el + 32)
        hb = _u8(w8, qh + el)
        v[i] = d * float32(_i8(w8, sc + s)) * float32(((a & 15) | ((hb & 3) << 4)) - 32)
        v[2 + i] = d * float32(_i8(w8, sc + s + 2)) * float32(
            ((cc & 15) | (((hb >> 2) & 3) << 4)) - 32
        )
        v[4 + i] = d * float32(_i8(w8, sc + s + 4)) * float32(
            ((a >> 4) | (((hb >> 4) & 3) << 4)) - 32
        )
        v[6 + i] = d * float32(_i8(w8, sc + s + 6)) * float32(
            ((cc >> 4) | (((hb >> 6) & 3) << 4)) - 32
        )
    return 256 * sb + 128 * h + 2 * vv


@cuda.jit(device=True, inline=True)
def row_nbytes(qtype, ncols):
    if qtype == F32:
        return 4 * ncols
    if qtype == F16:
        return 2 * ncols
    if qtype == Q4_0:
        return ncols // 32 * 18
    if qtype == Q4_1:
        return ncols // 32 * 20
    if qtype == Q5_0:
        return ncols // 32 * 22
    if qtype == Q5_1:
        return ncols // 32 * 24
    if qtype == Q8_0:
        return ncols // 32 * 34
    if qtype == Q4_K:
        return ncols // 256 * 144
    if qtype == Q5_K:
        return ncols // 256 * 176
    return ncols // 256 * 210  # Q6_K


# ---------------------------------------------------------------------------------------
# Matrix products
# ---------------------------------------------------------------------------------------


@cuda.jit(device=True)
def _row_partial(qtype, w8, w16, w32, ro, ncols, x, x_row0, n, normw, use_norm, lane, lanes, acc):
    """This lane's share of W[row] . x[x_row0 + t] for t < n, into acc[t] (x times ``normw``
    elementwise when ``use_norm``; the per-token RMS scale is applied by the caller)."""
    v = cuda.local.array(8, float32)
    run, gap = octet_layout(qtype)
    for t in range(n):
        acc[t] = float32(0.0)
    for j in range(lane, ncols // 8, lanes):
        c0 = octet(qtype, w8, w16, w32, ro, j, v)
        for t in range(n):
            s = float32(0.0)
            for k in range(8):
                col = c0 + k % run + (k // run) * gap
                xv = x[x_row0 + t, col]
                if use_norm:
                    xv *= normw[col]
                s += v[k] * xv
            acc[t] += s


@cuda.jit(device=True)
def _rms_scales(x, x_row0, n, ncols, eps, red, inv):
    """inv[t] = 1 / sqrt(mean(x[x_row0 + t]^2) + eps) for t < n, by the whole block."""
    tid = cuda.threadIdx.x
    bd = cuda.blockDim.x
    for t in range(n):
        s = float32(0.0)
        for c in range(tid, ncols, bd):
            xv = x[x_row0 + t, c]
            s += xv * xv
        red[t, tid] = s
    cuda.syncthreads()
    st = bd // 2
    while st > 0:
        if tid < st:
            for t in range(n):
                red[t, tid] += red[t, tid + st]
        cuda.syncthreads()
        st //= 2
    for t in range(tid, n, bd):
        inv[t] = float32(1.0) / math.sqrt(red[t, 0] / float32(ncols) + float32(eps))
    cuda.syncthreads()


@cuda.jit(device=True)
def _group_sum(red, row0, n, tid, lane, lanes):
    """Tree-sum red[row0 + t, group's threads] into red[row0 + t, group's first thread]."""
    st = lanes // 2
    while st > 0:
        if lane < st:
            for t in range(n):
                red[row0 + t, tid] += red[row0 + t, tid + st]
        cuda.syncthreads()
        st //= 2


@cuda.jit(device=True, inline=True)
def _segment(segs, g):
    """(segment, row within it) of global output row g; segment -1 past the last row."""
    first = int64(0)
    for s in range(segs.shape[0]):
        if g - first < segs[s, 2]:
            return s, g - first
        first += segs[s, 2]
    return -1, int64(0)


@cuda.jit(fastmath=True)
def matmul_kernel(
    w8, w16, w32, segs, ncols, x, x_row0, n, normw, eps, use_norm, bias, use_bias, accumulate,
    out, lanes,
):
    """out[t, c0_s + r] (=|+=) W_s[r] . x'[t] for every segment s of ``segs`` and t < n.

    ``segs[s] = (byte offset, type, rows, first output column)``; all share ``ncols``.
    x'[t] = x[x_row0 + t], RMS-normalized and times ``normw`` when ``use_norm``. With
    ``use_bias`` the bias vector (indexed by output column) is added; with ``accumulate``
    the result is added to ``out`` (residual connections). One row per group of ``lanes``
    threads; grid: ceil(total rows / (blockDim.x // lanes)) blocks.
    """
    red = cuda.shared.array((MAX_TOKENS, MAX_THREADS), float32)
    inv = cuda.shared.array(MAX_TOKENS, float32)
    acc = cuda.local.array(MAX_TOKENS, float32)
    tid = cuda.threadIdx.x
    lane = tid % lanes
    g = int64(cuda.blockIdx.x) * (cuda.blockDim.x // lanes) + tid // lanes
    if use_norm:
        _rms_scales(x, x_row0, n, ncols, eps, red, inv)
    s, r = _segment(segs, g)
    if s >= 0:
        qtype = segs[s, 1]
        ro = segs[s, 0] + r * row_nbytes(qtype, ncols)
        _row_partial(qtype, w8, w16, w32, ro, ncols, x, x_row0, n, normw, use_norm, lane, lanes,
                     acc)
    else:
        for t in range(n):
            acc[t] = float32(0.0)
    for t in range(n):
        red[t, tid] = acc[t]
    cuda.syncthreads()
    _group_sum(red, 0, n, tid, lane, lanes)
    if s >= 0:
        col = segs[s, 3] + r
        for t in range(lane, n, lanes):
            y = red[t, tid - lane]
            if use_norm:
                y *= inv[t]
            if use_bias:
                y += bias[col]
            if accumulate:
                out[t, col] += y
            else:
                out[t, col] = y


@cuda.jit(fastmath=True)
def swiglu_kernel(w8, w16, w32, segs, ncols, x, n, normw, eps, out, lanes):
    """out[t, r] = silu(G[r] . x'[t]) * (U[r] . x'[t]), x' the RMS-normalized x times
    ``normw``; ``segs`` = (gate, up) as in ``matmul_kernel`` (same row count)."""
    red = cuda.shared.array((2 * MAX_TOKENS, MAX_THREADS), float32)
    inv = cuda.shared.array(MAX_TOKENS, float32)
    acc = cuda.local.array(MAX_TOKENS, float32)
    tid = cuda.threadIdx.x
    lane = tid % lanes
    r = int64(cuda.blockIdx.x) * (cuda.blockDim.x // lanes) + tid // lanes
    nrows = segs[0, 2]
    _rms_scales(x, 0, n, ncols, eps, red, inv)
    for m in range(2):
        if r < nrows:
            qtype = segs[m, 1]
            ro = segs[m, 0] + r * row_nbytes(qtype, ncols)
            _row_partial(qtype, w8, w16, w32, ro, ncols, x, 0, n, normw, 1, lane, lanes, acc)
        else:
            for t in range(n):
                acc[t] = float32(0.0)
        for t in range(n):
            red[m * MAX_TOKENS + t, tid] = acc[t]
    cuda.syncthreads()
    _group_sum(red, 0, n, tid, lane, lanes)
    _group_sum(red, MAX_TOKENS, n, tid, lane, lanes)
    if r < nrows:
        for t in range(lane, n, lanes):
            gte = red[t, tid - lane] * inv[t]
            up = red[MAX_TOKENS + t, tid - lane] * inv[t]
            out[t, r] = gte / (float32(1.0) + math.exp(-gte)) * up


# ---------------------------------------------------------------------------------------
# Embedding, RoPE + cache write, attention, argmax
# ---------------------------------------------------------------------------------------


@cuda.jit
def embed_kernel(w8, w16, w32, qtype, wofs, dim, ctrl_in, ctrl, n, x):
    """x[t] = embedding row of token ctrl_in[1 + t] (block t). Block 0 also copies
    ctrl_in[0 : n + 1] (position, tokens; host memory the device can read) into the device
    array ``ctrl`` that the later kernels of the step read."""
    v = cuda.local.array(8, float32)
    t = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    bd = cuda.blockDim.x
    if t == 0:
        for i in range(tid, n + 1, bd):
            ctrl[i] = ctrl_in[i]
    tok = int64(ctrl_in[1 + t])
    ro = wofs + tok * row_nbytes(qtype, dim)
    run, gap = octet_layout(qtype)
    for j in range(tid, dim // 8, bd):
        c0 = octet(qtype, w8, w16, w32, ro, j, v)
        for k in range(8):
            x[t, c0 + k % run + (k // run) * gap] = v[k]


@cuda.jit
def rope_kv_kernel(qkv, n_heads, n_kv, hd, half, neox, cos_t, sin_t, ctrl, k_cache, v_cache,
                   layer):
    """Rotate the query heads of qkv row t in place and write the rotated key and the value
    of each KV head into the caches at position ctrl[0] + t. Block t * (n_heads + n_kv) + h.

    ``neox``: rotate pairs (i, i + half); otherwise adjacent pairs (2i, 2i + 1). Dimensions
    from 2 * half on are not rotated. cos_t/sin_t[p, i] = cos/sin(p * inv_freq[i]).
    """
    tid = cuda.threadIdx.x
    bd = cuda.blockDim.x
    heads = n_heads + n_kv
    t = cuda.blockIdx.x // heads
    h = cuda.blockIdx.x % heads
    pos = ctrl[0] + t
    q_dim = n_heads * hd
    kv_dim = n_kv * hd
    is_q = h < n_heads
    g = h - n_heads
    base = h * hd if is_q else q_dim + g * hd
    for i in range(tid, half, bd):
        if neox:
            a = i
            b = i + half
        else:
            a = 2 * i
            b = 2 * i + 1
        x0 = qkv[t, base + a]
        x1 = qkv[t, base + b]
        c = cos_t[pos, i]
        s = sin_t[pos, i]
        r0 = x0 * c - x1 * s
        r1 = x0 * s + x1 * c
        if is_q:
            qkv[t, base + a] = r0
            qkv[t, base + b] = r1
        else:
            k_cache[layer, g, pos, a] = r0
            k_cache[layer, g, pos, b] = r1
    if not is_q:
        for j in range(2 * half + tid, hd, bd):
            k_cache[layer, g, pos, j] = qkv[t, base + j]
        for j in range(tid, hd, bd):
            v_cache[layer, g, pos, j] = qkv[t, q_dim + kv_dim + g * hd + j]


@cuda.jit(device=True)
def _block_reduce(red, tid, bd, use_max):
    st = bd // 2
    while st > 0:
        if tid < st:
            if use_max:
                red[tid] = max(red[tid], red[tid + st])
            else:
                red[tid] += red[tid + st]
        cuda.syncthreads()
        st //= 2


@cuda.jit
def attention_kernel(qkv, n_heads, n_kv, hd, scale, ctrl, k_cache, v_cache, layer, out):
    """Causal attention of query head h of token t (block t * n_heads + h) over cache
    positions 0 .. ctrl[0] + t, reading KV head h // (n_heads / n_kv). Positions are taken
    blockDim.x at a time (a score per thread) with a running max and sum (online softmax),
    so the context length is not limited by shared memory."""
    q = cuda.shared.array(MAX_HEAD_DIM, float32)
    acc = cuda.shared.array(MAX_HEAD_DIM, float32)
    sc = cuda.shared.array(MAX_THREADS, float32)
    red = cuda.shared.array(MAX_THREADS, float32)
    stat = cuda.shared.array(2, float32)
    tid = cuda.threadIdx.x
    bd = cuda.blockDim.x
    t = cuda.blockIdx.x // n_heads
    h = cuda.blockIdx.x % n_heads
    g = h // (n_heads // n_kv)
    n_keys = ctrl[0] + t + 1
    for d in range(tid, hd, bd):
        q[d] = qkv[t, h * hd + d] * scale
        acc[d] = float32(0.0)
    if tid == 0:
        stat[0] = float32(NEG_BIG)
        stat[1] = float32(0.0)
    cuda.syncthreads()
    for c0 in range(0, n_keys, bd):
        p = c0 + tid
        s = float32(NEG_BIG)
        if p < n_keys:
            s = float32(0.0)
            for d in range(hd):
                s += q[d] * k_cache[layer, g, p, d]
        red[tid] = s
        cuda.syncthreads()
        _block_reduce(red, tid, bd, True)
        m_old = stat[0]
        m_new = max(m_old, red[0])
        e = float32(0.0)
        if p < n_keys:
            e = math.exp(s - m_new)
        sc[tid] = e
        cuda.syncthreads()  # every thread has read red[0]
        red[tid] = e
        cuda.syncthreads()
        _block_reduce(red, tid, bd, False)
        alpha = math.exp(m_old - m_new)
        n_here = min(bd, n_keys - c0)
        for d in range(tid, hd, bd):
            a = acc[d] * alpha
            for k in range(n_here):
                a += sc[k] * v_cache[layer, g, c0 + k, d]
            acc[d] = a
        cuda.syncthreads()  # every thread has read stat, red[0] and sc
        if tid == 0:
            stat[1] = stat[1] * alpha + red[0]
            stat[0] = m_new
        cuda.syncthreads()
    inv = float32(1.0) / stat[1]
    for d in range(tid, hd, bd):
        out[t, h * hd + d] = acc[d] * inv


@cuda.jit
def argmax_kernel(logits, row, vocab, out):
    """out[0] = the index of the largest of logits[row, :vocab] (lowest index on ties, -1 if
    all are -inf or NaN). One block."""
    bv = cuda.shared.array(MAX_THREADS, float32)
    bi = cuda.shared.array(MAX_THREADS, int32)
    tid = cuda.threadIdx.x
    bd = cuda.blockDim.x
    best = -math.inf
    idx = int32(vocab)
    for i in range(tid, vocab, bd):
        lv = logits[row, i]
        if lv > best:
            best = lv
            idx = int32(i)
    bv[tid] = best
    bi[tid] = idx
    cuda.syncthreads()
    st = bd // 2
    while st > 0:
        if tid < st:
            ov = bv[tid + st]
            oi = bi[tid + st]
            if ov > bv[tid] or (ov == bv[tid] and oi < bi[tid]):
                bv[tid] = ov
                bi[tid] = oi
        cuda.syncthreads()
        st //= 2
    if tid == 0:
        out[0] = bi[0] if bi[0] < vocab else -1
