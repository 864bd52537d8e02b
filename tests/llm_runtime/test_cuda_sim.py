"""The CUDA path under Numba's CUDA simulator, against the CPU kernels and the float64
reference, on tiny shapes.

The simulator is chosen by NUMBA_ENABLE_CUDASIM=1, which Numba reads once, when it is first
imported, and the rest of the suite needs the real numba.cuda (absent GPU and all). So in a
normal run this module holds one test that runs this same file in a fresh interpreter with
the variable set; there (or when you set it yourself:
``NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/llm_runtime/test_cuda_sim.py``) the tests
below run. Also here, outside the simulator: the errors of ``device="cuda"`` without a GPU.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SIM = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
ROOT = Path(__file__).resolve().parents[2]


def run_under_simulator(test_file: str, timeout: int = 1500) -> None:
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-o", "addopts=", "-q", "-x", "-p", "no:cacheprovider",
         test_file],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-8000:]
    last = [line for line in out.splitlines() if line.strip()][-1]
    assert " passed" in last and "skipped" not in last and "failed" not in last, out[-2000:]


if not SIM:

    def test_cuda_path_under_simulator():
        run_under_simulator(__file__)

    def test_device_cuda_without_gpu_says_so(tmp_path):
        from numba import cuda

        from grammask.llm_runtime import LLM
        from grammask.llm_runtime.cuda_model import CudaUnavailableError

        from .tiny_gguf import write_tiny_model

        if cuda.is_available():
            pytest.skip("a GPU is present here")
        path = write_tiny_model(tmp_path / "m.gguf", dim=64, ffn=128, vocab=64, n_layers=1)
        with pytest.raises(CudaUnavailableError, match="device='cuda' needs an NVIDIA GPU"):
            LLM(str(path), device="cuda")

    def test_unknown_device_is_refused(tmp_path):
        from grammask.llm_runtime import LLM

        from .tiny_gguf import write_tiny_model

        path = write_tiny_model(tmp_path / "m.gguf", dim=64, ffn=128, vocab=64, n_layers=1)
        with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda'"):
            LLM(str(path), device="tpu")

else:
    sys.setswitchinterval(1e-4)  # the simulator's threads hand the GIL over at each barrier

    import gguf
    from numba import cuda

    from grammask.llm_runtime import kernels_cpu as K
    from grammask.llm_runtime import kernels_cuda as KC
    from grammask.llm_runtime.cuda_model import CudaTransformer, LaunchGeometry
    from grammask.llm_runtime.gguf_file import QUANT_IDS
    from grammask.llm_runtime.transformer import Transformer

    from .reference import ReferenceModel
    from .tiny_gguf import random_blocks, write_tiny_model

    GPU_TYPES = ["F32", "F16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"]
    PAD = 32  # tensors start 32-byte aligned in a GGUF, and so in the device blob

    def _weights(type_name, rows, cols, rng):
        raw = random_blocks(type_name, rows * cols, rng)
        buf = np.zeros((PAD + raw.size + 7) // 4 * 4, np.uint8)
        buf[PAD : PAD + raw.size] = raw
        ref = gguf.quants.dequantize(raw.reshape(rows, -1), gguf.GGMLQuantizationType[type_name])
        w8 = cuda.to_device(buf)
        return (w8, w8.view(np.float16), w8.view(np.float32)), buf, np.asarray(ref, np.float64)

    @pytest.mark.parametrize("type_name", GPU_TYPES)
    def test_embedding_rows_dequantize_like_cpu(type_name):
        rng = np.random.default_rng(1)
        rows, cols = 3, 256
        w, buf, ref = _weights(type_name, rows, cols, rng)
        ctrl_in = np.array([5, 2, 0, 1], np.int64)  # position, tokens 2, 0, 1
        ctrl = cuda.to_device(np.zeros(4, np.int64))
        x = cuda.to_device(np.zeros((3, cols), np.float32))
        KC.embed_kernel[3, 16](*w, QUANT_IDS[type_name], PAD, cols, ctrl_in, ctrl, 3, x)
        cpu = np.empty((rows, cols), np.float32)
        K.dequantize_rows(QUANT_IDS[type_name], buf, PAD, rows, cols, cpu)
        np.testing.assert_allclose(x.copy_to_host(), cpu[[2, 0, 1]], rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(cpu, ref, rtol=1e-6, atol=1e-9)
        assert list(ctrl.copy_to_host()) == [5, 2, 0, 1]

    def _rms(x, w, eps):
        x = x.astype(np.float64)
        return x / np.sqrt((x * x).mean(axis=1, keepdims=True) + eps) * w

    @pytest.mark.parametrize("type_name", GPU_TYPES)
    def test_matmul_kernel_matches_dequantized_product_and_cpu(type_name):
        rng = np.random.default_rng(2)
        rows, cols, n = 5, 256, 3
        w, buf, W = _weights(type_name, rows, cols, rng)
        x = rng.standard_normal((KC.MAX_TOKENS, cols)).astype(np.float32)
        segs = np.array([[PAD, QUANT_IDS[type_name], rows, 2]], np.int64)
        out = cuda.to_device(np.full((KC.MAX_TOKENS, rows + 2), 7.0, np.float32))
        dummy = np.zeros(1, np.float32)
        KC.matmul_kernel[3, 4](*w, segs, cols, x, 1, n, dummy, 1e-5, 0, dummy, 0, 1, out, 2)
        got = out.copy_to_host()
        ref = x[1 : 1 + n].astype(np.float64) @ W.T
        scale = np.abs(W).sum(axis=1).max() * np.abs(x).max()
        np.testing.assert_allclose(got[:n, 2:], 7.0 + ref, rtol=0, atol=1e-6 * scale)
        assert np.all(got[:n, :2] == 7.0) and np.all(got[n:] == 7.0)  # nothing else written
        # the CPU kernel (int8 activations where the type has that path) agrees to its error
        xq = np.empty((n, cols), np.int8)
        xd = np.empty((n, cols // 32), np.float32)
        xs = np.empty_like(xd)
        K.quantize_rows(x[1 : 1 + n], xq, xd, xs)
        cpu = np.empty((n, rows), np.float32)
        K.matmul(QUANT_IDS[type_name], buf, PAD, rows, cols, x[1 : 1 + n], xq, xd, xs, cpu, 0)
        np.testing.assert_allclose(got[:n, 2:] - 7.0, cpu, rtol=0, atol=2e-2 * scale)

    def test_matmul_kernel_segments_norm_bias_at_full_gpu_geometry():
        """Three segments of different types (like Q, K, V), RMSNorm and bias fused, with
        the production block shape (32 lanes per row, 4 rows per block)."""
        rng = np.random.default_rng(3)
        cols, n = 256, 2
        parts = [("Q4_K", 3), ("Q8_0", 2), ("Q6_K", 2)]
        raws, refs, segs, off, col = [], [], [], PAD, 0
        for name, rows in parts:
            raw = random_blocks(name, rows * cols, rng)
            refs.append(gguf.quants.dequantize(raw.reshape(rows, -1), gguf.GGMLQuantizationType[name]))
            raws.append((off, raw))
            segs.append([off, QUANT_IDS[name], rows, col])
            off += raw.size
            col += rows
        buf = np.zeros((off + 7) // 4 * 4, np.uint8)
        for o, raw in raws:
            buf[o : o + raw.size] = raw
        w8 = cuda.to_device(buf)
        W = np.concatenate([np.asarray(r, np.float64).reshape(-1, cols) for r in refs])
        x = (rng.standard_normal((KC.MAX_TOKENS, cols)) * 3).astype(np.float32)
        norm_w = (1 + 0.1 * rng.standard_normal(cols)).astype(np.float32)
        bias = rng.standard_normal(col).astype(np.float32)
        out = cuda.to_device(np.zeros((KC.MAX_TOKENS, col), np.float32))
        g = LaunchGeometry()
        blocks = (col + g.rows - 1) // g.rows
        KC.matmul_kernel[blocks, g.lanes * g.rows](
            w8, w8.view(np.float16), w8.view(np.float32), np.array(segs, np.int64), cols, x, 0,
            n, norm_w, 1e-5, 1, bias, 1, 0, out, g.lanes,
        )
        ref = _rms(x[:n], norm_w, 1e-5) @ W.T + bias
        np.testing.assert_allclose(out.copy_to_host()[:n], ref, rtol=0, atol=1e-5 * np.abs(ref).max())

    def test_swiglu_kernel():
        rng = np.random.default_rng(4)
        rows, cols, n = 6, 64, 2
        raw = random_blocks("Q4_1", 2 * rows * cols, rng)
        buf = np.zeros((PAD + raw.size + 7) // 4 * 4, np.uint8)
        buf[PAD : PAD + raw.size] = raw
        W = np.asarray(gguf.quants.dequantize(raw.reshape(2 * rows, -1), gguf.GGMLQuantizationType.Q4_1), np.float64)
        gate, up = W[:rows].reshape(rows, cols), W[rows:].reshape(rows, cols)
        segs = np.array([[PAD, 3, rows, 0], [PAD + raw.size // 2, 3, rows, rows]], np.int64)
        x = rng.standard_normal((KC.MAX_TOKENS, cols)).astype(np.float32)
        norm_w = (1 + 0.1 * rng.standard_normal(cols)).astype(np.float32)
        out = cuda.to_device(np.zeros((KC.MAX_TOKENS, rows), np.float32))
        w8 = cuda.to_device(buf)
        KC.swiglu_kernel[2, 8](w8, w8.view(np.float16), w8.view(np.float32), segs, cols, x, n,
                               norm_w, 1e-5, out, 2)
        xn = _rms(x[:n], norm_w, 1e-5)
        g, u = xn @ gate.T, xn @ up.T
        ref = g / (1 + np.exp(-g)) * u
        np.testing.assert_allclose(out.copy_to_host()[:n], ref, rtol=1e-4, atol=1e-6)

    @pytest.mark.parametrize("neox,n_rot", [(False, 16), (True, 16), (False, 12), (True, 8)])
    def test_rope_kv_and_attention_match_cpu(neox, n_rot):
        rng = np.random.default_rng(5)
        n_heads, n_kv, hd, n_past, n, layers, ctx = 4, 2, 16, 5, 3, 2, 12
        q_dim, kv_dim = n_heads * hd, n_kv * hd
        qkv = rng.standard_normal((n, q_dim + 2 * kv_dim)).astype(np.float32)
        k_cache = rng.standard_normal((layers, n_kv, ctx, hd)).astype(np.float32)
        v_cache = rng.standard_normal((layers, n_kv, ctx, hd)).astype(np.float32)
        inv_freq = (5000.0 ** (-np.arange(n_rot // 2) * 2.0 / n_rot)).astype(np.float32)
        theta = np.arange(ctx, dtype=np.float64)[:, None] * inv_freq.astype(np.float64)[None]
        cos_t, sin_t = np.cos(theta).astype(np.float32), np.sin(theta).astype(np.float32)
        # CPU: rope, cache write, attention
        c_qkv, c_k, c_v = qkv.copy(), k_cache.copy(), v_cache.copy()
        positions = np.arange(n_past, n_past + n)
        K.rope_inplace(c_qkv, 0, n_heads, hd, positions, inv_freq, neox)
        K.rope_inplace(c_qkv, q_dim, n_kv, hd, positions, inv_freq, neox)
        for t in range(n):
            for g in range(n_kv):
                c_k[1, g, n_past + t] = c_qkv[t, q_dim + g * hd : q_dim + (g + 1) * hd]
                c_v[1, g, n_past + t] = c_qkv[t, q_dim + kv_dim + g * hd : q_dim + kv_dim + (g + 1) * hd]
        c_out = np.zeros((n, q_dim), np.float32)
        K.attention(c_qkv, n_heads, n_kv, hd, c_k, c_v, 1, n_past, c_out)
        # GPU
        d_qkv = cuda.to_device(qkv)
        d_k, d_v = cuda.to_device(k_cache), cuda.to_device(v_cache)
        ctrl = cuda.to_device(np.array([n_past], np.int64))
        KC.rope_kv_kernel[n * (n_heads + n_kv), 4](
            d_qkv, n_heads, n_kv, hd, n_rot // 2, int(neox), cos_t, sin_t, ctrl, d_k, d_v, 1
        )
        out = cuda.to_device(np.zeros((n, q_dim), np.float32))
        KC.attention_kernel[n * n_heads, 4](
            d_qkv, n_heads, n_kv, hd, float(1 / np.sqrt(hd)), ctrl, d_k, d_v, 1, out
        )
        np.testing.assert_allclose(d_qkv.copy_to_host()[:, :q_dim], c_qkv[:, :q_dim], atol=1e-6)
        np.testing.assert_allclose(d_k.copy_to_host(), c_k, atol=1e-6)
        np.testing.assert_array_equal(d_v.copy_to_host(), c_v)
        # block of 4 threads: 8 keys are taken in two chunks (the running softmax is used)
        np.testing.assert_allclose(out.copy_to_host(), c_out, rtol=1e-5, atol=1e-6)

    def test_argmax_kernel_ties_and_masked():
        logits = np.full((2, 37), -np.inf, np.float32)
        logits[0, [3, 20, 30]] = [1.0, 2.5, 2.5]
        out = cuda.to_device(np.zeros(1, np.int32))
        KC.argmax_kernel[1, 8](logits, 0, 37, out)
        assert out.copy_to_host()[0] == 20  # lowest id among equal maxima, like np.argmax
        KC.argmax_kernel[1, 8](logits, 1, 37, out)
        assert out.copy_to_host()[0] == -1  # everything masked
        KC.argmax_kernel[1, 8](logits, 0, 25, out)  # only the first 25 columns count
        assert out.copy_to_host()[0] == 20

    # -- the model -------------------------------------------------------------------------
    TOKENS = [3, 17, 5, 60, 1, 2, 33, 9, 40, 41, 7, 8, 12, 13, 50, 51, 52, 4, 6]  # > 16: chunks
    TINY = {"dim": 64, "ffn": 128, "n_heads": 4, "n_kv": 2, "vocab": 64, "ctx": 48}
    MODEL_CASES = {
        "llama-q4_1-tied": {"n_layers": 2, "matrix_type": "Q4_1", "embd_type": "Q8_0"},
        "qwen2-bias-mixed": {"n_layers": 1, "arch": "qwen2", "qkv_bias": True,
                             "matrix_type": "Q5_0", "embd_type": "BF16", "output_type": "F16"},
        "llama-rope-freqs-mha": {"n_layers": 1, "matrix_type": "Q8_0", "embd_type": "F32",
                                 "output_type": "Q4_0", "rope_freqs": True, "n_kv": 4,
                                 "n_rot": 8},
    }

    @pytest.mark.parametrize("case", sorted(MODEL_CASES))
    def test_forward_matches_float_reference(tmp_path, case):
        path = write_tiny_model(tmp_path / "m.gguf", **{**TINY, **MODEL_CASES[case]})
        model = CudaTransformer(path)
        got = model.forward(TOKENS, all_logits=True)
        ref = ReferenceModel(str(path)).logits(TOKENS)
        np.testing.assert_allclose(got, ref, rtol=0, atol=3e-5 * np.abs(ref).max())
        assert model.n_past == len(TOKENS)
        # one token at a time through the decode step gives the same logits
        model.reset()
        model.forward(TOKENS[:4])
        last = model.forward([TOKENS[4]])
        np.testing.assert_allclose(last, got[4], rtol=0, atol=3e-5 * np.abs(ref).max())

    @pytest.fixture(scope="module")
    def tiny_path(tmp_path_factory):
        p = tmp_path_factory.mktemp("cuda") / "tiny.gguf"
        return write_tiny_model(p, **{**TINY, "n_layers": 1, "matrix_type": "Q4_1", "seed": 7})

    def test_truncate_and_errors(tiny_path):
        model = CudaTransformer(tiny_path, n_ctx=8)
        a = model.forward([1, 2, 3, 4])
        model.forward([5, 6])
        model.truncate(4)
        model.forward([5])
        model.truncate(3)
        b = model.forward([4])
        np.testing.assert_allclose(a, b, atol=1e-6)
        with pytest.raises(ValueError, match="context overflow"):
            model.forward([1] * 5)
        with pytest.raises(ValueError, match="out of range"):
            model.forward([64])
        with pytest.raises(ValueError, match="cannot truncate"):
            model.truncate(9)

    def _greedy_reference(path, prompt, steps, allowed=None):
        """Greedy tokens by the forward() logits (host argmax), masked to ``allowed``."""
        m = CudaTransformer(path)
        logits = m.forward(prompt)
        out = []
        for _ in range(steps):
            if allowed is not None:
                logits = np.where(np.isin(np.arange(logits.size), allowed), logits, -np.inf)
            t = int(np.argmax(logits))
            out.append(t)
            logits = m.forward([t])
        return out

    def test_decode_loop_greedy_matches_forward_and_cpu(tiny_path):
        model = CudaTransformer(tiny_path)
        model.forward([1, 2, 3])
        got = list(model.decode(max_tokens=6))
        assert got == _greedy_reference(tiny_path, [1, 2, 3], 6)
        assert model.n_past == 3 + 5  # the last token was not fed
        cpu = Transformer(tiny_path)
        logits = cpu.forward([1, 2, 3] + got[:-1], all_logits=True)[2:]
        top2 = np.sort(logits, axis=1)[:, -2:]
        clear = top2[:, 1] - top2[:, 0] > 0.05  # CPU's int8 activations move near-ties
        assert np.array_equal(np.argmax(logits, axis=1)[clear], np.array(got)[clear])
        # stop ids end the loop without being yielded (decode starts from the logits of the
        # last forward, so roll back and feed the prompt's last token again)
        j = next((i for i in range(1, 6) if got[i] not in got[:i]), 0)
        model.truncate(2)
        model.forward([3])
        assert list(model.decode(max_tokens=6, stop_ids=[got[j]])) == got[:j]

    class _SetMatcher:
        """A stand-in grammar matcher allowing a fixed token set, ending after k tokens."""

        def __init__(self, allowed, k):
            self.allowed, self.k, self.accepted = allowed, k, []

        def fill_next_token_bitmask(self, bitmask, index=0):
            words = np.zeros(bitmask.shape[1], np.uint32)
            for t in self.allowed:
                words[t >> 5] |= np.uint32(1) << np.uint32(t & 31)
            bitmask[index] = words.view(np.int32)

        def accept_token(self, t):
            ok = t in self.allowed
            if ok:
                self.accepted.append(t)
            return ok

        def is_terminated(self):
            return len(self.accepted) >= self.k

        def is_completed(self):
            return False

        def can_continue(self):
            return True

    def test_decode_loop_with_a_matcher_masks_on_the_gpu(tiny_path):
        allowed = [5, 31, 32, 63]
        model = CudaTransformer(tiny_path)
        model.forward([1, 2, 3])
        m = _SetMatcher(allowed, 4)
        got = list(model.decode(max_tokens=10, matcher=m))
        assert got == m.accepted and len(got) == 4  # ends when the matcher terminates
        assert got == _greedy_reference(tiny_path, [1, 2, 3], 4, allowed)

    def test_decode_with_a_real_grammar(tiny_path):
        import re

        from grammask.automata.compiler import GrammarCompiler
        from grammask.automata.matcher import GrammarMatcher
        from grammask.automata.tokenizer_info import TokenizerInfo

        vocab = [b"</s>"] + [bytes([c]) for c in b"abcdefghijklmnopqrstuvwxyz0123456789{}:,"]
        vocab += [b"ab", b"cd", b"12", b"34", b"a1", b"b2"]
        vocab += [b"<x%d>" % i for i in range(64 - len(vocab))]
        info = TokenizerInfo(vocab, "raw", stop_token_ids=[0])
        compiled = GrammarCompiler(info).compile_regex("[ab]{1,2}[0-9]{2}")
        model = CudaTransformer(tiny_path)
        model.forward([1, 2, 3])
        matcher = GrammarMatcher(compiled)
        got = list(model.decode(max_tokens=12, matcher=matcher, stop_ids=[0]))
        text = b"".join(vocab[t] for t in got).decode()
        assert re.fullmatch("[ab]{1,2}[0-9]{2}", text), text  # complete: ended by the grammar
        assert matcher.is_completed()

    def test_sampling_respects_the_mask(tiny_path):
        model = CudaTransformer(tiny_path)
        model.forward([1, 2, 3])
        m = _SetMatcher([7, 40], 5)
        rng = np.random.default_rng(0)
        got = list(model.decode(max_tokens=5, matcher=m, temperature=1.5, rng=rng))
        assert len(got) == 5 and set(got) <= {7, 40}

    class _ReplayGraph:
        """Stands in for TorchGraph: freezes the launches at capture and replays exactly
        them, as a CUDA graph would (arguments included)."""

        captures = 0

        def __init__(self, seq):
            type(self).captures += 1
            self.frozen = tuple((k, g, b, tuple(a)) for k, g, b, a in seq.launches)

        def launch(self, stream):
            for k, g, b, a in self.frozen:
                k[g, b, stream](*a)

    def test_captured_step_replays_correctly(tiny_path):
        """The decode step and the token choice captured once and replayed every token give
        the same tokens as fresh launches: every per-step input is read from memory."""
        model = CudaTransformer(tiny_path, graphs=False)
        model._capture(_ReplayGraph)
        assert _ReplayGraph.captures == 4
        assert all(isinstance(r, _ReplayGraph) for r in model._runners.values())
        model.forward([1, 2, 3])
        got = list(model.decode(max_tokens=5))
        assert got == _greedy_reference(tiny_path, [1, 2, 3], 5)
        model.truncate(2)
        model.forward([3])
        m = _SetMatcher([5, 31, 32, 63], 3)
        assert list(model.decode(max_tokens=5, matcher=m)) == _greedy_reference(
            tiny_path, [1, 2, 3], 3, [5, 31, 32, 63]
        )

    def test_llm_device_cuda_generates_on_the_gpu(tiny_path, monkeypatch):
        """LLM(device="cuda") wiring: a CudaTransformer model, and generate_ids without a hook
        runs the GPU decode loop (the tiny model has no tokenizer: stand-ins for it)."""
        from types import SimpleNamespace

        from grammask.llm_runtime import llm as llm_module

        monkeypatch.setattr(llm_module, "tokenizer_from_gguf_metadata", lambda md: None)
        monkeypatch.setattr(
            llm_module.GGUFTokenizerInfo, "from_metadata",
            classmethod(lambda cls, md: SimpleNamespace(eot_ids=())),
        )
        llm = llm_module.LLM(str(tiny_path), device="cuda")
        assert isinstance(llm.model, CudaTransformer)
        outcome = {}
        got = list(llm.generate_ids([1, 2, 3], max_tokens=4, temperature=0, outcome=outcome))
        assert got == _greedy_reference(tiny_path, [1, 2, 3], 4)
        assert outcome["finish_reason"] == "length"
        got = list(llm.generate_ids([1, 2, 3], max_tokens=4, temperature=0, stop_ids=[got[0]],
                                    outcome=outcome))
        assert got == [] and outcome["finish_reason"] == "stop"
