"""Token bitmasks applied to logits on the GPU (numba.cuda).

``apply_token_bitmask_inplace_cuda`` takes logits on the GPU, a torch CUDA tensor or a
numba device array (anything else with ``__cuda_array_interface__`` goes through
``numba.cuda.as_cuda_array``), and a bitmask on the host or the GPU. A host bitmask is copied
into a pinned staging buffer and from there to the GPU asynchronously, on the stream of the
masking kernel, so the call returns without waiting for the GPU. Wrapping a torch tensor for
numba costs far more than the kernel (~170 us measured), so the views of torch tensors are
made once and cached by (address, shape, strides, dtype), as are the staging buffers, the
device buffers and the streams.

The kernel only writes: a disallowed logit becomes -inf. float16 and bfloat16 logits are
written through an int16 view of their bits (numba has no bfloat16), so every float dtype of
torch is handled by the same kernel.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
from numba import cuda

from .bitmask import bitmask_words

_THREADS = 128
# -inf as the bits of a 16-bit float (int16 view): float16 0xFC00, bfloat16 0xFF80
_NEG_INF_F16 = np.int16(-1024)
_NEG_INF_BF16 = np.int16(-128)


@cuda.jit
def bitmask_kernel(logits, bitmask, rows, mask_rows, vocab, neg):
    """logits[rows[i], c] = neg for c < vocab where bit c & 31 of word c >> 5 of bitmask row
    mask_rows[i] is clear. Grid: (ceil(vocab / blockDim.x), len(rows))."""
    c = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    i = cuda.blockIdx.y
    if c < vocab:
        word = bitmask[mask_rows[i], c >> 5]
        if not (word >> (c & 31)) & 1:
            logits[rows[i], c] = neg


class _Cache:
    """Views, buffers and streams kept between calls (bounded, least recently used out)."""

    def __init__(self, size: int = 32):
        self.size = size
        self.items: OrderedDict = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key, make):
        with self.lock:
            item = self.items.get(key)
            if item is not None:
                self.items.move_to_end(key)
                return item
        item = make()
        with self.lock:
            self.items[key] = item
            if len(self.items) > self.size:
                self.items.popitem(last=False)
        return item


_views = _Cache()
_streams = _Cache(8)
_staging = _Cache(1024)  # one per stream object
_staging_lock = threading.Lock()


def _make_view(tensor):
    """A numba device array over a torch CUDA tensor's memory (no reference kept to it)."""
    return cuda.from_cuda_array_interface(tensor.__cuda_array_interface__, owner=None, sync=False)


def _torch_view(tensor):
    """The cached 2-D numba view of a torch CUDA tensor (16-bit floats as int16), and the
    value that means -inf in it."""
    import torch

    dt = tensor.dtype
    key = (tensor.data_ptr(), tuple(tensor.shape), tuple(tensor.stride()), dt, tensor.device.index)

    def make():
        t = tensor.unsqueeze(0) if tensor.dim() == 1 else tensor
        if dt in (torch.float16, torch.bfloat16):
            t = t.view(torch.int16)
        elif dt not in (torch.float32, torch.float64):
            raise TypeError(f"logits must be a floating-point tensor, got {dt}")
        return _make_view(t)

    neg = _NEG_INF_F16 if dt == torch.float16 else _NEG_INF_BF16 if dt == torch.bfloat16 else -np.inf
    return _views.get(key, make), neg


def _numba_view(arr):
    """2-D view of a numba device array of logits (16-bit floats as int16), and -inf."""
    if not hasattr(arr, "copy_to_host"):
        arr = cuda.as_cuda_array(arr)
    dt = np.dtype(arr.dtype)
    if arr.ndim == 1:
        arr = arr.reshape(1, arr.shape[0])
    if dt == np.float16:
        return arr.view(np.int16), _NEG_INF_F16
    if dt not in (np.float32, np.float64):
        raise TypeError(f"logits must be float16, float32 or float64, got {dt}")
    return arr, -np.inf


def _torch_stream(tensor):
    import torch

    s = torch.cuda.current_stream(tensor.device)
    return _streams.get(("torch", s.cuda_stream), lambda: cuda.external_stream(s.cuda_stream))


class _Staging:
    """A pinned host buffer and its device twin for one stream (grown as needed); an event
    tells when the last copy out of the pinned buffer has run, so that it is not overwritten
    (or freed) before."""

    def __init__(self):
        self.capacity = 0
        self.host = self.dev = None
        self.event = cuda.event()
        self.used = False

    def take(self, n: int, fill, stream):
        """Device int32 array of n words filled by fill(host_buffer), copied asynchronously."""
        if self.used:
            self.event.synchronize()
        if n > self.capacity:
            self.capacity = max(n, 2 * self.capacity, 1024)
            self.host = cuda.pinned_array(self.capacity, np.int32)
            self.dev = cuda.device_array(self.capacity, np.int32)
        fill(self.host[:n])
        self.dev[:n].copy_to_device(self.host[:n], stream=stream)
        self.event.record(stream)
        self.used = True
        return self.dev[:n]


def apply_token_bitmask_inplace_cuda(
    logits, bitmask, vocab_size: int | None = None, indices=None, *, stream=None
) -> None:
    """Set to -inf the logits (on the GPU) of the tokens the bitmask disallows.

    ``logits``: ``(batch, vocab)`` or ``(vocab,)``, a torch CUDA tensor (float32/64, float16,
    bfloat16) or a numba device array (float16/32/64). ``bitmask``: int32 ``(batch, words)``
    or ``(words,)``, on the host (numpy or torch CPU: copied asynchronously through pinned
    memory) or the GPU (torch CUDA tensor or numba device array: read in place). With
    ``indices``, only those logits rows are masked: bitmask row ``i`` for logits row
    ``indices[i]`` when the bitmask has one row per index, else bitmask row ``indices[i]``.
    Columns from ``vocab_size`` on (default: the smaller of the logits width and 32 times
    the words) are left alone. The kernel runs on ``stream`` (default: torch's current
    stream for torch logits, numba's default stream otherwise) and the call does not wait
    for it. IndexError/ValueError for indices or shapes that do not fit, TypeError for
    unsupported dtypes.
    """
    is_torch = type(logits).__module__.startswith("torch")
    if is_torch:
        view, neg = _torch_view(logits)
        if stream is None:
            stream = _torch_stream(logits)
    else:
        view, neg = _numba_view(logits)
        if stream is None:
            stream = 0
    batch, width = view.shape

    bm_dev = None
    if type(bitmask).__module__.startswith("torch"):
        if bitmask.is_cuda:
            bm_dev = _views.get(
                (bitmask.data_ptr(), tuple(bitmask.shape), tuple(bitmask.stride()),
                 bitmask.dtype, bitmask.device.index),
                lambda: _make_view(bitmask.unsqueeze(0) if bitmask.dim() == 1 else bitmask),
            )
        else:
            bitmask = bitmask.numpy()
    elif hasattr(bitmask, "copy_to_host") or hasattr(bitmask, "__cuda_array_interface__"):
        bm_dev = bitmask if hasattr(bitmask, "copy_to_host") else cuda.as_cuda_array(bitmask)
        if bm_dev.ndim == 1:
            bm_dev = bm_dev.reshape(1, bm_dev.shape[0])
    if bm_dev is not None:
        if np.dtype(bm_dev.dtype) != np.int32:
            raise TypeError(f"bitmask must be int32, got {bm_dev.dtype}")
        bm_rows, words = bm_dev.shape
        bm_host = None
    else:
        bm_host = np.asarray(bitmask)
        if bm_host.dtype != np.int32:
            raise TypeError(f"bitmask must be int32, got {bm_host.dtype}")
        if bm_host.ndim == 1:
            bm_host = bm_host[None, :]
        if bm_host.ndim != 2:
            raise ValueError("bitmask must be 1-D or 2-D")
        bm_rows, words = bm_host.shape

    vocab = min(width, words * 32)
    if vocab_size is not None:
        vocab = min(vocab, int(vocab_size))
    rows = (np.arange(batch, dtype=np.int32) if indices is None
            else np.asarray(indices, dtype=np.int64).reshape(-1))
    if rows.size == 0 or vocab <= 0:
        return
    if rows.min() < 0 or rows.max() >= batch:
        raise IndexError("indices out of range of the logits batch")
    mask_rows = np.arange(rows.size) if bm_rows == rows.size else rows
    if mask_rows.max() >= bm_rows:
        raise ValueError(f"bitmask has {bm_rows} rows, not enough for the logits rows {rows.tolist()}")

    k = rows.size
    n_mask = 0 if bm_host is None else bm_rows * words

    def fill(buf):
        buf[:k] = rows
        buf[k : 2 * k] = mask_rows
        if bm_host is not None:
            buf[2 * k :].reshape(bm_rows, words)[:] = bm_host

    staging = _staging.get(id(stream), _Staging)
    with _staging_lock:
        dev = staging.take(2 * k + n_mask, fill, stream)
    rows_dev = dev[:k]
    mrows_dev = dev[k : 2 * k]
    if bm_dev is None:
        bm_dev = dev[2 * k :].reshape(bm_rows, words)
    grid = ((vocab + _THREADS - 1) // _THREADS, k)
    if is_torch and logits.device.index not in (None, 0):
        with cuda.gpus[logits.device.index]:
            bitmask_kernel[grid, _THREADS, stream](view, bm_dev, rows_dev, mrows_dev, vocab, neg)
    else:
        bitmask_kernel[grid, _THREADS, stream](view, bm_dev, rows_dev, mrows_dev, vocab, neg)


__all__ = ["apply_token_bitmask_inplace_cuda", "bitmask_kernel", "bitmask_words"]
