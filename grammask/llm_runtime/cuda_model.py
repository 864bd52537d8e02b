"""The runtime on an NVIDIA GPU (numba.cuda): ``CudaTransformer``, the GPU twin of
``Transformer``.

Weights are uploaded once, still quantized (the GGUF bytes, BF16 converted to F32), and
dequantized inside the matrix-product kernels of ``kernels_cuda``. Every buffer (activations,
logits, the KV cache for ``n_ctx`` positions) is allocated up front, and the per-step inputs
(position, tokens) are written by the host into mapped (zero-copy) host memory that the first
kernel reads. A decode step is therefore one fixed sequence of kernel launches with fixed
arguments (about 6 per layer), and so is the choice of the next token (masking, argmax).

From Python each numba.cuda launch costs tens of microseconds, which would dominate a small
model's step. With torch installed, each fixed sequence is captured once as a CUDA graph:
the kernels are launched on torch's capture stream (``numba.cuda.external_stream``) inside
``torch.cuda.graph`` and the graph is replayed every token. Without torch there are no
graphs: the same sequences run as plain launches (correct, but launch-bound).

Constrained decoding overlaps: the step is launched asynchronously, then the CPU feeds the
token to the grammar matcher and computes the next bitmask straight into mapped host memory
while the GPU runs; the masking kernel reads it from there.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from numba import config as _numba_config

from ..mask_kernels.bitmask import bitmask_words
from . import kernels_cpu as K
from .sampling import sample_token
from .transformer import Transformer


class CudaUnavailableError(RuntimeError):
    """``device="cuda"`` was asked for, but numba.cuda finds no usable GPU or driver."""


def cuda_unavailable_reason() -> str | None:
    """Why the GPU path cannot run here (no driver, no GPU, no NVVM), or None if it can."""
    try:
        from numba import cuda
    except Exception as e:  # noqa: BLE001 - whatever a broken install raises
        return f"numba.cuda cannot be imported ({type(e).__name__}: {e})"
    try:
        if cuda.is_available():
            return None
    except Exception as e:  # noqa: BLE001 - whatever a broken driver raises
        return f"the CUDA driver failed to initialize ({type(e).__name__}: {e})"
    err = getattr(cuda, "cuda_error", lambda: None)()
    if err:
        return "no CUDA driver: " + " ".join(str(err).split())
    return "no CUDA GPU is visible, or NVVM (the CUDA toolkit's compiler library) is missing"


def require_cuda() -> None:
    """Raise CudaUnavailableError, saying why, unless numba.cuda can run kernels."""
    reason = cuda_unavailable_reason()
    if reason is not None:
        raise CudaUnavailableError(
            f"device='cuda' needs an NVIDIA GPU with a working CUDA driver, and numba.cuda "
            f"reports: {reason}. Use device='cpu' (the default) to run on the CPU."
        )


@dataclass(frozen=True)
class LaunchGeometry:
    """Threads per block. ``lanes``: threads sharing one output row of a matrix product (a
    power of two); ``rows``: rows per block; ``threads``: block size of the attention,
    RoPE, embedding and argmax kernels (a power of two). lanes * rows and threads are at
    most ``kernels_cuda.MAX_THREADS``."""

    lanes: int = 32
    rows: int = 4
    threads: int = 128


# Numba's CUDA simulator runs a Python thread per GPU thread and is slow at each barrier;
# small blocks keep the tests quick while running the same kernels.
SIMULATOR_GEOMETRY = LaunchGeometry(lanes=2, rows=16, threads=16)


def default_geometry() -> LaunchGeometry:
    return SIMULATOR_GEOMETRY if _numba_config.ENABLE_CUDASIM else LaunchGeometry()


def _torch_cuda():
    """torch, if it is installed and sees a GPU (then it owns the CUDA graphs); else None."""
    if _numba_config.ENABLE_CUDASIM or os.environ.get("GRAMMASK_NO_TORCH_GRAPHS"):
        return None
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def _host_array(mapped) -> np.ndarray:
    """The plain numpy array over a mapped (host, device-visible) allocation: numba returns an
    ndarray subclass whose methods act like a device array's; the simulator, a wrapper."""
    ary = getattr(mapped, "_ary", None)
    return ary if isinstance(ary, np.ndarray) else np.asarray(mapped)


class LaunchSequence:
    """A fixed list of kernel launches ``(kernel, grid, block, args)``: what a CUDA graph
    captures. Nothing in it may change between runs; per-step inputs live in device or
    mapped memory the kernels read."""

    def __init__(self, launches: list[tuple]):
        self.launches = launches

    def launch(self, stream) -> None:
        for kernel, grid, block, args in self.launches:
            kernel[grid, block, stream](*args)


class TorchGraph:
    """A LaunchSequence captured once with ``torch.cuda.graph`` and replayed on ``tstream``
    (a torch stream; the numba launches go to it through ``external_stream``)."""

    def __init__(self, seq: LaunchSequence, torch, tstream):
        from numba import cuda

        self._torch = torch
        self._tstream = tstream
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, stream=tstream, capture_error_mode="thread_local"):
            seq.launch(cuda.external_stream(tstream.cuda_stream))

    def launch(self, stream=None) -> None:
        with self._torch.cuda.stream(self._tstream):
            self.graph.replay()


class CudaTransformer:
    """A GGUF model on the GPU, with the interface of ``Transformer`` (``forward``,
    ``truncate``, ``reset``, ``tokens``, ``n_past``, ``n_ctx``, ``config``) and a decode loop
    that keeps the logits on the GPU (``decode``).

    ``n_ctx``: KV cache capacity (default and maximum: the model's context length); the whole
    cache is allocated on the GPU up front. ``graphs``: capture the decode step and the
    token choice as CUDA graphs (default: when torch with CUDA is installed; without torch
    the launches are plain). ``geometry``: thread-block shapes (default: ``LaunchGeometry()``,
    small blocks under Numba's CUDA simulator). Raises CudaUnavailableError without a usable
    GPU, ModelFormatError for unsupported files (as Transformer does).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        n_ctx: int | None = None,
        *,
        graphs: bool | None = None,
        geometry: LaunchGeometry | None = None,
    ):
        require_cuda()
        from numba import cuda

        from . import kernels_cuda as KC

        self._cuda, self._kc = cuda, KC
        host = Transformer(path, n_ctx=n_ctx)  # validates the file, builds the weight tables
        self.file, self.path, self.config, self.n_ctx = host.file, host.path, host.config, host.n_ctx
        c = self.config
        if c.head_dim > KC.MAX_HEAD_DIM:
            raise ValueError(f"head size {c.head_dim} > {KC.MAX_HEAD_DIM} is not supported on CUDA")
        self.geometry = geometry or default_geometry()
        g = self.geometry
        if g.lanes * g.rows > KC.MAX_THREADS or g.threads > KC.MAX_THREADS:
            raise ValueError(f"blocks of more than {KC.MAX_THREADS} threads are not supported")
        self.tokens: list[int] = []
        self._upload(host)
        self._allocate()
        torch = _torch_cuda()
        if graphs and torch is None:
            raise CudaUnavailableError("graphs=True needs torch with CUDA (torch owns the graphs)")
        self.uses_graphs = bool(torch is not None and graphs is not False)
        if torch is not None:
            self._tstream = torch.cuda.Stream()
            self.stream = cuda.external_stream(self._tstream.cuda_stream)
        else:
            self.stream = cuda.stream()
        self._plans: dict[tuple[int, bool], LaunchSequence] = {}
        self._runners = {
            "step": self._plan(1, False),
            "argmax": LaunchSequence([self._argmax_launch()]),
            "masked_argmax": LaunchSequence([self._mask_launch(), self._argmax_launch()]),
            "mask": LaunchSequence([self._mask_launch()]),
        }
        if self.uses_graphs:
            self._capture(lambda seq: TorchGraph(seq, torch, self._tstream))

    # -- setup ---------------------------------------------------------------------------
    def _upload(self, host: Transformer) -> None:
        """One device byte array with every tensor's GGUF bytes (offsets relative to it)."""
        cuda, c = self._cuda, self.config
        data, start = host.file.data, host.file.data_start
        extra: list[np.ndarray] = []
        size = [data.shape[0] - start]
        converted: dict[int, tuple[int, int]] = {}

        def reloc(off: int, qtype: int, rows: int, cols: int) -> tuple[int, int]:
            if qtype != K.BF16:
                return off - start, qtype
            if off not in converted:  # no bf16 arithmetic in the kernels: widen once
                f32 = np.empty((rows, cols), np.float32)
                K.dequantize_rows(qtype, data, off, rows, cols, f32)
                size[0] = (size[0] + 15) // 16 * 16
                converted[off] = (size[0], K.F32)
                extra.append((size[0], f32.reshape(-1).view(np.uint8)))
                size[0] += f32.nbytes
            return converted[off]

        L, dim, ffn = c.n_layers, c.dim, c.ffn_dim
        q_dim = c.n_heads * c.head_dim
        qkv = host.qkv_segs.copy()
        gate_up = host.gate_up_segs.copy()
        o_segs = np.zeros((L, 1, 4), np.int64)
        down_segs = np.zeros((L, 1, 4), np.int64)
        for layer in range(L):
            for s in range(3):
                qkv[layer, s, :2] = reloc(*qkv[layer, s, :2], qkv[layer, s, 2], dim)
            for s in range(2):
                gate_up[layer, s, :2] = reloc(*gate_up[layer, s, :2], ffn, dim)
            o_segs[layer, 0] = (*reloc(*host.layer_w[layer, 3], dim, q_dim), dim, 0)
            down_segs[layer, 0] = (*reloc(*host.layer_w[layer, 6], dim, ffn), dim, 0)
        emb = reloc(*host.embedding, c.vocab_size, dim)
        out = reloc(*host.output, c.vocab_size, dim)
        blob = np.zeros((size[0] + 3) // 4 * 4, np.uint8)
        blob[: data.shape[0] - start] = data[start:]
        for off, raw in extra:
            blob[off : off + raw.shape[0]] = raw
        self.w8 = cuda.to_device(blob)
        self.w16 = self.w8.view(np.float16)
        self.w32 = self.w8.view(np.float32)
        self.weight_bytes = int(blob.nbytes)
        self._emb = tuple(int(v) for v in emb)
        to_dev = cuda.to_device
        self._qkv_segs = to_dev(qkv)
        self._gate_up_segs = to_dev(gate_up)
        self._o_segs = to_dev(o_segs)
        self._down_segs = to_dev(down_segs)
        self._out_segs = to_dev(np.array([[out[0], out[1], c.vocab_size, 0]], np.int64))
        self._norms = to_dev(host.layer_norms)
        self._bias = to_dev(host.layer_bias)
        self._out_norm = to_dev(host.output_norm)
        # cos/sin of every position, computed as the CPU kernel computes them
        pos = np.arange(self.n_ctx, dtype=np.float64)[:, None]
        theta = pos * host.inv_freq.astype(np.float64)[None, :]
        self._cos = to_dev(np.cos(theta).astype(np.float32))
        self._sin = to_dev(np.sin(theta).astype(np.float32))
        self._dummy = to_dev(np.zeros(1, np.float32))

    def _allocate(self) -> None:
        cuda, c, KC = self._cuda, self.config, self._kc
        T = KC.MAX_TOKENS
        q_dim, kv_dim = c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim
        f32 = np.float32
        self._x = cuda.device_array((T, c.dim), f32)
        self._qkv = cuda.device_array((T, q_dim + 2 * kv_dim), f32)
        self._att = cuda.device_array((T, q_dim), f32)
        self._act = cuda.device_array((T, c.ffn_dim), f32)
        self._logits = cuda.device_array((T, c.vocab_size), f32)
        shape = (c.n_layers, c.n_kv_heads, self.n_ctx, c.head_dim)
        self._k_cache = cuda.device_array(shape, f32)
        self._v_cache = cuda.device_array(shape, f32)
        self._ctrl_in = cuda.mapped_array(T + 1, np.int64)  # host writes, first kernel reads
        self._ctrl = cuda.device_array(T + 1, np.int64)
        self._tok_out = cuda.mapped_array(1, np.int32)
        self._mask_in = cuda.mapped_array((1, bitmask_words(c.vocab_size)), np.int32)
        self.bitmask = _host_array(self._mask_in)  # what a matcher fills: (1, words) int32
        self._ctrl_host = _host_array(self._ctrl_in)
        self._tok_host = _host_array(self._tok_out)
        self._row0 = cuda.to_device(np.zeros(1, np.int32))
        self._logits_host = cuda.pinned_array((T, c.vocab_size), f32)
        nl = c.n_layers
        self._layer = [
            (
                self._qkv_segs[i], self._gate_up_segs[i], self._o_segs[i], self._down_segs[i],
                self._norms[i, 0], self._norms[i, 1], self._bias[i],
            )
            for i in range(nl)
        ]

    def _blocks(self, rows: int) -> int:
        return (rows + self.geometry.rows - 1) // self.geometry.rows

    def _plan(self, n: int, all_logits: bool) -> LaunchSequence:
        """The launches of a forward pass over n tokens (ctrl_in holds position and tokens);
        logits of every token (all_logits) or of the last one go to rows 0.. of _logits."""
        key = (n, all_logits)
        if key in self._plans:
            return self._plans[key]
        KC, c, g = self._kc, self.config, self.geometry
        w = (self.w8, self.w16, self.w32)
        mm_block = g.lanes * g.rows
        th = g.threads
        hd = c.head_dim
        q_dim, kv_dim = c.n_heads * hd, c.n_kv_heads * hd
        eps = float(c.norm_eps)
        half = int(self._cos.shape[1])
        scale = float(1.0 / np.sqrt(hd))
        x, qkv, att, act = self._x, self._qkv, self._att, self._act
        kc, vc, ctrl, dummy = self._k_cache, self._v_cache, self._ctrl, self._dummy
        bias_on = int(c.qkv_bias)
        L = [
            (KC.embed_kernel, n, th,
             (*w, self._emb[1], self._emb[0], c.dim, self._ctrl_in, ctrl, n, x)),
        ]
        for i, (qkv_s, gu_s, o_s, down_s, n_att, n_ffn, bias) in enumerate(self._layer):
            L += [
                (KC.matmul_kernel, self._blocks(q_dim + 2 * kv_dim), mm_block,
                 (*w, qkv_s, c.dim, x, 0, n, n_att, eps, 1, bias, bias_on, 0, qkv, g.lanes)),
                (KC.rope_kv_kernel, n * (c.n_heads + c.n_kv_heads), th,
                 (qkv, c.n_heads, c.n_kv_heads, hd, half, int(c.rope_neox), self._cos, self._sin,
                  ctrl, kc, vc, i)),
                (KC.attention_kernel, n * c.n_heads, th,
                 (qkv, c.n_heads, c.n_kv_heads, hd, scale, ctrl, kc, vc, i, att)),
                (KC.matmul_kernel, self._blocks(c.dim), mm_block,
                 (*w, o_s, q_dim, att, 0, n, dummy, eps, 0, dummy, 0, 1, x, g.lanes)),
                (KC.swiglu_kernel, self._blocks(c.ffn_dim), mm_block,
                 (*w, gu_s, c.dim, x, n, n_ffn, eps, act, g.lanes)),
                (KC.matmul_kernel, self._blocks(c.dim), mm_block,
                 (*w, down_s, c.ffn_dim, act, 0, n, dummy, eps, 0, dummy, 0, 1, x, g.lanes)),
            ]
        row0, n_out = (0, n) if all_logits else (n - 1, 1)
        L.append(
            (KC.matmul_kernel, self._blocks(c.vocab_size), mm_block,
             (*w, self._out_segs, c.dim, x, row0, n_out, self._out_norm, eps, 1, dummy, 0, 0,
              self._logits, g.lanes))
        )
        seq = self._plans[key] = LaunchSequence(L)
        return seq

    def _argmax_launch(self) -> tuple:
        return (self._kc.argmax_kernel, 1, self.geometry.threads,
                (self._logits, 0, self.config.vocab_size, self._tok_out))

    def _mask_launch(self) -> tuple:
        from ..mask_kernels.bitmask_cuda import bitmask_kernel

        vocab, th = self.config.vocab_size, self.geometry.threads
        return (bitmask_kernel, ((vocab + th - 1) // th, 1), th,
                (self._logits, self._mask_in, self._row0, self._row0, vocab, -np.inf))

    def _capture(self, make_graph) -> None:
        """Run each fixed sequence once (compiles and loads the kernels: no module loading
        may happen during a capture), then replace it by ``make_graph(sequence)``, an object
        whose ``launch(stream)`` replays it (a TorchGraph)."""
        self._ctrl_host[:2] = (0, 0)
        self.bitmask[:] = -1
        for seq in self._runners.values():
            seq.launch(self.stream)
        self.stream.synchronize()
        self._runners = {k: make_graph(s) for k, s in self._runners.items()}
        self.stream.synchronize()

    # -- the Transformer interface ---------------------------------------------------------
    @property
    def n_past(self) -> int:
        return len(self.tokens)

    def truncate(self, n: int) -> None:
        """Roll the KV cache back to its first ``n`` tokens."""
        if not 0 <= n <= self.n_past:
            raise ValueError(f"cannot truncate a cache of {self.n_past} tokens to {n}")
        del self.tokens[n:]

    def reset(self) -> None:
        self.truncate(0)

    def _check(self, toks: np.ndarray) -> None:
        if toks.size == 0:
            raise ValueError("forward() needs at least one token")
        if self.n_past + toks.size > self.n_ctx:
            raise ValueError(
                f"context overflow: {self.n_past} cached + {toks.size} new tokens > n_ctx "
                f"{self.n_ctx} of {self.path}"
            )
        if toks.min() < 0 or toks.max() >= self.config.vocab_size:
            raise ValueError(f"token id out of range [0, {self.config.vocab_size})")

    def _set_inputs(self, toks) -> None:
        # The previous launches must have read _ctrl_in: callers synchronize first.
        self._ctrl_host[0] = self.n_past
        self._ctrl_host[1 : 1 + len(toks)] = toks

    def forward(self, tokens, all_logits: bool = False) -> np.ndarray:
        """Feed ``tokens`` after the cached ones; return the logits of the last one
        ([vocab]) or of every new one ([n, vocab]), copied to the host. Runs in chunks of
        ``kernels_cuda.MAX_TOKENS`` tokens; the logits of the last token also stay on the
        GPU for ``decode``. ValueError on context overflow or a bad token id."""
        toks = np.asarray(tokens, dtype=np.int64).reshape(-1)
        self._check(toks)
        T = self._kc.MAX_TOKENS
        out = []
        for i in range(0, toks.size, T):
            chunk = toks[i : i + T]
            n = chunk.size
            self._set_inputs(chunk)
            if n == 1 and not all_logits:
                self._runners["step"].launch(self.stream)
            else:
                self._plan(n, all_logits).launch(self.stream)
            self.tokens.extend(int(t) for t in chunk)
            rows = n if all_logits else 1
            if all_logits or i + T >= toks.size:
                self._logits[:rows].copy_to_host(self._logits_host[:rows], stream=self.stream)
            self.stream.synchronize()
            if all_logits:
                out.append(np.array(self._logits_host[:rows]))
        if all_logits:
            return np.concatenate(out)
        return np.array(self._logits_host[0])

    # -- decoding with the logits on the GPU ---------------------------------------------------
    def launch_step(self, token: int) -> None:
        """Start the forward pass of one token (asynchronous: returns before it ends)."""
        if self.n_past + 1 > self.n_ctx:
            raise ValueError(f"context overflow: n_ctx {self.n_ctx} of {self.path} is full")
        if not 0 <= token < self.config.vocab_size:
            raise ValueError(f"token id out of range [0, {self.config.vocab_size})")
        self._set_inputs((token,))
        self._runners["step"].launch(self.stream)
        self.tokens.append(int(token))

    def pick(
        self,
        *,
        masked: bool = False,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: float = 1.0,
        rng: np.random.Generator | None = None,
    ) -> int:
        """The next token from the logits of the last forward pass (waits for it).

        ``masked``: first set to -inf the logits the bitmask in ``self.bitmask`` disallows
        (int32 words, bit t & 31 of word t >> 5 set = token t allowed). Greedy
        (``temperature <= 0``): argmax on the GPU, one int comes back. Otherwise the masked
        logits are copied to the host and sampled there (see ``sample_token``). ValueError
        if every token is masked.
        """
        if temperature <= 0:
            self._runners["masked_argmax" if masked else "argmax"].launch(self.stream)
            self.stream.synchronize()
            tok = int(self._tok_host[0])
            if tok < 0:
                raise ValueError("every token is masked (all logits are -inf)")
            return tok
        if masked:
            self._runners["mask"].launch(self.stream)
        self._logits[:1].copy_to_host(self._logits_host[:1], stream=self.stream)
        self.stream.synchronize()
        return sample_token(
            self._logits_host[0], temperature=temperature, top_k=top_k, top_p=top_p, rng=rng
        )

    def decode(
        self,
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: float = 1.0,
        rng: np.random.Generator | None = None,
        stop_ids: Iterable[int] = (),
        matcher=None,
        outcome: dict | None = None,
    ) -> Iterator[int]:
        """Yield tokens after a ``forward`` (whose last logits are still on the GPU): pick,
        launch the next step, yield; until a stop id (not yielded), ``max_tokens``, a full
        context, or, with a grammar ``matcher`` (a GrammarMatcher), its termination.

        With a matcher each token is masked by its bitmask; the matcher accepts the token
        and computes the next bitmask (into mapped host memory) while the GPU runs the step.
        ``outcome["finish_reason"]`` (when a dict is given) becomes ``"stop"`` (a stop id or
        the matcher ended it) or ``"length"``.
        """
        stops = set(stop_ids)
        outcome = {} if outcome is None else outcome
        outcome["finish_reason"] = "length"
        if matcher is not None:
            matcher.fill_next_token_bitmask(self.bitmask, 0)
        produced = 0
        while produced < max_tokens:
            tok = self.pick(
                masked=matcher is not None, temperature=temperature, top_k=top_k, top_p=top_p,
                rng=rng,
            )
            if tok in stops:
                outcome["finish_reason"] = "stop"
                return
            produced += 1
            more = produced < max_tokens and self.n_past < self.n_ctx
            if more:
                self.launch_step(tok)  # the GPU runs while the host goes on
            yield tok
            if matcher is not None:
                if not matcher.accept_token(tok):
                    raise RuntimeError(f"token {tok} was chosen outside the grammar's mask")
                if matcher.is_terminated() or (
                    matcher.is_completed() and not matcher.can_continue()
                ):
                    outcome["finish_reason"] = "stop"
                    more = False
                else:
                    matcher.fill_next_token_bitmask(self.bitmask, 0)
            if not more:
                return
