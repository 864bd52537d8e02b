"""apply_token_bitmask_inplace_cuda under Numba's CUDA simulator, against the numpy version.

As in tests/llm_runtime/test_cuda_sim.py: NUMBA_ENABLE_CUDASIM must be set before Numba is
first imported, so a normal run re-runs this file in a fresh interpreter with it set.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

SIM = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
ROOT = Path(__file__).resolve().parents[2]

if not SIM:

    def test_bitmask_cuda_under_simulator():
        env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-o", "addopts=", "-q", "-x", "-p", "no:cacheprovider",
             __file__],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False,
        )
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-8000:]
        last = [line for line in out.splitlines() if line.strip()][-1]
        assert " passed" in last and "skipped" not in last, out[-2000:]

else:
    from numba import cuda

    from grammask.mask_kernels import bitmask_cuda
    from grammask.mask_kernels.bitmask import apply_token_bitmask_inplace
    from grammask.mask_kernels.bitmask_cuda import apply_token_bitmask_inplace_cuda

    def _random_case(rng, batch, vocab, words_extra):
        words = (vocab + 31) // 32 + words_extra
        bitmask = rng.integers(-(2**31), 2**31, size=(batch, words), dtype=np.int64).astype(np.int32)
        logits = rng.standard_normal((batch, vocab)).astype(np.float32)
        return logits, bitmask

    @settings(max_examples=25, deadline=None)
    @given(
        seed=st.integers(0, 2**31),
        batch=st.integers(1, 4),
        vocab=st.integers(1, 300),
        words_extra=st.integers(-1, 1),
        dtype=st.sampled_from([np.float32, np.float64]),
        use_indices=st.booleans(),
        mask_per_index=st.booleans(),
        vocab_size=st.none() | st.integers(0, 320),
        device_mask=st.booleans(),
    )
    def test_matches_numpy(seed, batch, vocab, words_extra, dtype, use_indices, mask_per_index,
                           vocab_size, device_mask):
        rng = np.random.default_rng(seed)
        if (vocab + 31) // 32 + words_extra < 1:
            words_extra = 0
        logits, bitmask = _random_case(rng, batch, vocab, words_extra)
        logits = logits.astype(dtype)
        indices = None
        if use_indices:
            indices = sorted(rng.choice(batch, size=rng.integers(1, batch + 1), replace=False))
            if mask_per_index:
                bitmask = bitmask[: len(indices)]
        expect = logits.copy()
        apply_token_bitmask_inplace(expect, bitmask, vocab_size=vocab_size, indices=indices)
        dev = cuda.to_device(logits)
        bm = cuda.to_device(bitmask) if device_mask else bitmask
        apply_token_bitmask_inplace_cuda(dev, bm, vocab_size=vocab_size, indices=indices)
        np.testing.assert_array_equal(dev.copy_to_host(), expect)

    def test_one_dimensional_and_float16():
        rng = np.random.default_rng(0)
        logits, bitmask = _random_case(rng, 1, 100, 0)
        half = logits[0].astype(np.float16)
        dev = cuda.to_device(half)
        apply_token_bitmask_inplace_cuda(dev, bitmask[0])
        got = dev.copy_to_host()
        expect = half.copy()
        apply_token_bitmask_inplace(expect, bitmask[0])
        np.testing.assert_array_equal(got, expect)
        assert np.isneginf(got).sum() == np.isneginf(expect).sum() > 0

    def test_errors():
        dev = cuda.to_device(np.zeros((2, 64), np.float32))
        with pytest.raises(TypeError, match="int32"):
            apply_token_bitmask_inplace_cuda(dev, np.zeros((2, 2), np.int64))
        with pytest.raises(IndexError):
            apply_token_bitmask_inplace_cuda(dev, np.zeros((2, 2), np.int32), indices=[2])
        with pytest.raises(ValueError, match="rows"):
            apply_token_bitmask_inplace_cuda(dev, np.zeros((1, 2), np.int32), indices=[0, 1])
        with pytest.raises(TypeError, match="float"):
            apply_token_bitmask_inplace_cuda(cuda.to_device(np.zeros(64, np.int32)),
                                             np.zeros(2, np.int32))

    def test_staging_buffer_reused_and_grown():
        """The pinned staging buffer is made once per stream and reused; a larger bitmask
        grows it, and its contents then are the new mask, not the old."""
        bitmask_cuda._staging.items.clear()
        stream = cuda.stream()
        a = cuda.to_device(np.zeros((1, 64), np.float32))
        apply_token_bitmask_inplace_cuda(a, np.array([[-1, 0]], np.int32), stream=stream)
        (staging,) = bitmask_cuda._staging.items.values()
        first = staging.host
        apply_token_bitmask_inplace_cuda(a, np.array([[0, -1]], np.int32), stream=stream)
        assert staging.host is first
        assert np.isneginf(a.copy_to_host()).all()
        big = cuda.to_device(np.zeros((3, 40000), np.float32))
        mask = np.zeros((3, 1250), np.int32)
        mask[1, 5] = 1 << 3
        apply_token_bitmask_inplace_cuda(big, mask, stream=stream)
        assert staging.host is not first and len(bitmask_cuda._staging.items) == 1
        got = big.copy_to_host()
        assert np.isfinite(got).sum() == 1 and got[1, 5 * 32 + 3] == 0

    @pytest.mark.parametrize("dtype_name", ["float32", "float16", "bfloat16"])
    def test_views_of_torch_tensors_are_made_once(monkeypatch, dtype_name):
        """Only the torch-to-numba bridge is faked (torch here has no CUDA): the view of a
        tensor is made on the first call and reused; 16-bit floats are viewed as int16 and
        get their own -inf bit pattern."""
        torch = pytest.importorskip("torch")
        made = []

        def fake_make_view(tensor):
            made.append(tensor)
            dev = cuda.to_device(tensor.numpy())
            dev.tensor_dtype = tensor.dtype
            return dev

        monkeypatch.setattr(bitmask_cuda, "_make_view", fake_make_view)
        bitmask_cuda._views.items.clear()
        dtype = getattr(torch, dtype_name)
        logits = torch.zeros((2, 70), dtype=dtype)
        bitmask = np.zeros((2, 3), np.int32)
        bitmask[:, 0] = 0b1010
        stream = cuda.stream()
        for _ in range(4):
            apply_token_bitmask_inplace_cuda(logits, bitmask, stream=stream)
        assert len(made) == 1
        view = bitmask_cuda._views.items[next(iter(bitmask_cuda._views.items))]
        assert view.tensor_dtype == (dtype if dtype_name == "float32" else torch.int16)
        got = torch.from_numpy(view.copy_to_host())
        if dtype_name != "float32":
            got = got.view(dtype)
        allowed = torch.zeros(70, dtype=torch.bool)
        allowed[[1, 3]] = True
        assert torch.isneginf(got[:, ~allowed]).all() and (got[:, allowed] == 0).all()
        # another tensor (another address) gets its own view
        apply_token_bitmask_inplace_cuda(torch.zeros((2, 70), dtype=dtype), bitmask, stream=stream)
        assert len(made) == 2
