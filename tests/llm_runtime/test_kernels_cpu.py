"""Quantized kernels against the `gguf` package's own numpy dequantization."""

import gguf
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grammask.llm_runtime import kernels_cpu as K
from grammask.llm_runtime.gguf_file import QUANT_IDS

from .tiny_gguf import random_blocks

ALL_TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"]
INT8_TYPES = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"]
UNPACK_TYPES = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K"]
FUSED_TYPES = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"]


def _tensor(type_name, rows, cols, rng, pad=7):
    """Random raw tensor bytes placed at an odd offset (kernels must not assume alignment)."""
    raw = random_blocks(type_name, rows * cols, rng)
    buf = np.concatenate([np.zeros(pad, np.uint8), raw])
    ref = gguf.quants.dequantize(raw.reshape(rows, -1), gguf.GGMLQuantizationType[type_name])
    return buf, pad, np.asarray(ref, np.float64).reshape(rows, cols)


@pytest.mark.parametrize("type_name", ALL_TYPES)
@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**31), rows=st.integers(1, 9), superblocks=st.integers(1, 3))
def test_dequantize_matches_gguf(type_name, seed, rows, superblocks):
    rng = np.random.default_rng(seed)
    cols = 256 * superblocks
    buf, off, ref = _tensor(type_name, rows, cols, rng)
    out = np.empty((rows, cols), np.float32)
    K.dequantize_rows(QUANT_IDS[type_name], buf, off, rows, cols, out)
    np.testing.assert_array_equal(out, ref.astype(np.float32))


@pytest.mark.parametrize("type_name", ALL_TYPES)
@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**31), rows=st.integers(1, 40), n=st.integers(1, 6))
def test_matmul_matches_dequantized_product(type_name, seed, rows, n):
    rng = np.random.default_rng(seed)
    cols = 512
    buf, off, W = _tensor(type_name, rows, cols, rng)
    x = rng.standard_normal((n, cols)).astype(np.float32)
    xq = np.empty((n, cols), np.int8)
    xd = np.empty((n, cols // 32), np.float32)
    xs = np.empty_like(xd)
    K.quantize_rows(x, xq, xd, xs)
    out = np.full((n, rows + 3), np.nan, np.float32)
    K.matmul(QUANT_IDS[type_name], buf, off, rows, cols, x, xq, xd, xs, out, 3)
    if type_name in INT8_TYPES:
        # integer path: exact up to float32 rounding given the int8 activations it used
        xin = (xq.reshape(n, -1, 32) * xd[:, :, None].astype(np.float64)).reshape(n, cols)
    else:
        xin = x.astype(np.float64)
    ref = xin @ W.T
    scale = np.abs(W).sum(axis=1).max() * np.abs(xin).max()
    assert np.all(np.isnan(out[:, :3]))  # columns before out_col0 untouched
    np.testing.assert_allclose(out[:, 3:], ref, rtol=0, atol=2e-6 * scale)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31), scale=st.floats(1e-3, 1e3))
def test_activation_quantization_error_bound(seed, scale):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((2, 96)) * scale).astype(np.float32)
    x[1, :32] = 0.0  # an all-zero block must quantize to zeros, not NaN
    xq = np.empty((2, 96), np.int8)
    xd = np.empty((2, 3), np.float32)
    xs = np.empty_like(xd)
    K.quantize_rows(x, xq, xd, xs)
    deq = xq.reshape(2, 3, 32) * xd[:, :, None]
    amax = np.abs(x.reshape(2, 3, 32)).max(axis=2, keepdims=True)
    # round-to-nearest: error at most half a step (amax/127/2), plus float rounding
    assert np.all(np.abs(deq - x.reshape(2, 3, 32)) <= amax / 254 * (1 + 1e-5) + 1e-30)
    np.testing.assert_allclose(xs, xd * xq.reshape(2, 3, 32).sum(axis=2), rtol=1e-6)
    assert np.all(xq[1, :32] == 0) and xd[1, 0] == 0


def test_rms_norm_and_swiglu():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 64)).astype(np.float32)
    w = rng.standard_normal(64).astype(np.float32)
    out = np.empty_like(x)
    K.rms_norm(x, w, 1e-5, out)
    ref = x / np.sqrt((x.astype(np.float64) ** 2).mean(1, keepdims=True) + 1e-5) * w
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
    gu = rng.standard_normal((2, 40)).astype(np.float32)
    act = np.empty((2, 20), np.float32)
    K.swiglu(gu, 20, act)
    g = gu[:, :20].astype(np.float64)
    np.testing.assert_allclose(act, g / (1 + np.exp(-g)) * gu[:, 20:], rtol=1e-5, atol=1e-6)


def _caller(row_dot):
    from numba import njit

    @njit
    def call(w, o, xq, xd, xs, nb):
        return row_dot(w, o, xq, xd, xs, nb)

    return call


@pytest.mark.parametrize("variant", ["generic", "vnni"])
@pytest.mark.parametrize("type_name", FUSED_TYPES)
def test_both_simd_variants_of_row_dot(variant, type_name):
    # The portable IR runs on hosts without VNNI; test it here too (and VNNI where present).
    from grammask.llm_runtime import simd

    if variant == "vnni" and not simd.HOST_HAS_VNNI:
        pytest.skip("host has no VNNI")
    table = simd.VNNI_ROW_DOTS if variant == "vnni" else simd.GENERIC_ROW_DOTS
    call = _caller(table[type_name.lower()])
    rng = np.random.default_rng(3)
    buf, off, W = _tensor(type_name, 3, 256, rng)
    x = rng.standard_normal((1, 256)).astype(np.float32)
    x[0, :32] *= 100  # blocks of very different scales
    xq = np.empty((1, 256), np.int8)
    xd = np.empty((1, 8), np.float32)
    xs = np.empty_like(xd)
    K.quantize_rows(x, xq, xd, xs)
    xin = (xq.reshape(-1, 32) * xd[0, :, None].astype(np.float64)).reshape(256)
    rb = len(buf[off:]) // 3
    for r in range(3):
        got = call(buf, off + r * rb, xq[0], xd[0], xs[0], 8)
        ref = W[r] @ xin
        assert abs(got - ref) <= 2e-6 * np.abs(W[r]).sum() * np.abs(xin).max()


@pytest.mark.parametrize("variant", ["generic", "vnni"])
@pytest.mark.parametrize("type_name", UNPACK_TYPES)
def test_unpacked_rows_and_both_variants_of_unpacked_dot(variant, type_name):
    from grammask.llm_runtime import simd

    if variant == "vnni" and not simd.HOST_HAS_VNNI:
        pytest.skip("host has no VNNI")
    call = _unpacked_caller(
        simd.VNNI_UNPACKED_DOT if variant == "vnni" else simd.GENERIC_UNPACKED_DOT
    )
    rng = np.random.default_rng(4)
    buf, off, W = _tensor(type_name, 2, 512, rng)
    q = np.empty(512, np.uint8)
    wd = np.empty(16, np.float32)
    wc = np.empty(16, np.float32)
    K.unpack_row_u8(QUANT_IDS[type_name], buf, off, 16, q, wd, wc)
    # the unpacked form reproduces the weights exactly
    np.testing.assert_allclose(
        (wd[:, None] * q.reshape(16, 32) + wc[:, None]).reshape(-1), W[0], rtol=1e-6, atol=1e-7
    )
    x = rng.standard_normal((1, 512)).astype(np.float32)
    xq = np.empty((1, 512), np.int8)
    xd = np.empty((1, 16), np.float32)
    xs = np.empty_like(xd)
    K.quantize_rows(x, xq, xd, xs)
    xin = (xq.reshape(-1, 32) * xd[0, :, None].astype(np.float64)).reshape(512)
    got = call(q, wd, wc, xq[0], xd[0], xs[0], 16)
    assert abs(got - W[0] @ xin) <= 2e-6 * np.abs(W[0]).sum() * np.abs(xin).max()


def _unpacked_caller(dot):
    from numba import njit

    @njit
    def call(q, wd, wc, xq, xd, xs, nb):
        return dot(q, wd, wc, xq, xd, xs, nb)

    return call


@pytest.mark.parametrize("variant", ["generic", "vnni"])
def test_q6_k_unpacking_and_both_variants_of_its_dot(variant):
    from numba import njit

    from grammask.llm_runtime import simd

    if variant == "vnni" and not simd.HOST_HAS_VNNI:
        pytest.skip("host has no VNNI")
    dot = simd.VNNI_UNPACKED16_DOT if variant == "vnni" else simd.GENERIC_UNPACKED16_DOT

    @njit
    def call(q, wd16, xq, xd, nb):
        return dot(q, wd16, xq, xd, nb)

    rng = np.random.default_rng(5)
    buf, off, W = _tensor("Q6_K", 1, 512, rng)
    q = np.empty(512, np.uint8)
    wd16 = np.empty(32, np.float32)
    K.unpack_row_q6_k(buf, off, 16, q, wd16)
    np.testing.assert_allclose(
        (wd16[:, None] * (q.reshape(32, 16).astype(np.float64) - 32)).reshape(-1), W[0], rtol=1e-6
    )
    x = rng.standard_normal((1, 512)).astype(np.float32)
    xq = np.empty((1, 512), np.int8)
    xd = np.empty((1, 16), np.float32)
    xs = np.empty_like(xd)
    K.quantize_rows(x, xq, xd, xs)
    xin = (xq.reshape(-1, 32) * xd[0, :, None].astype(np.float64)).reshape(512)
    got = call(q, wd16, xq[0], xd[0], 16)
    assert abs(got - W[0] @ xin) <= 2e-6 * np.abs(W[0]).sum() * np.abs(xin).max()
