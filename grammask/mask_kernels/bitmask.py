"""Token bitmasks: allocation and application to logits.

A bitmask row is ``ceil(vocab_size / 32)`` int32 words; bit ``t & 31`` of word ``t >> 5`` set
means token ``t`` is allowed (XGrammar's layout, so engines can share buffers).
"""

from __future__ import annotations

import numba as nb
import numpy as np

BITMASK_DTYPE = np.int32


def bitmask_words(vocab_size: int) -> int:
    """Number of int32 words in one bitmask row."""
    return (int(vocab_size) + 31) // 32


def get_bitmask_shape(batch_size: int, vocab_size: int) -> tuple[int, int]:
    """The shape of a bitmask for ``batch_size`` rows over ``vocab_size`` tokens."""
    return (int(batch_size), bitmask_words(vocab_size))


def allocate_token_bitmask(batch_size: int, vocab_size: int) -> np.ndarray:
    """A ``(batch_size, ceil(vocab_size/32))`` int32 array with every token allowed."""
    if batch_size < 1 or vocab_size < 1:
        raise ValueError(f"batch_size and vocab_size must be positive, got {batch_size}, {vocab_size}")
    return np.full((int(batch_size), bitmask_words(vocab_size)), -1, dtype=BITMASK_DTYPE)


def reset_token_bitmask(bitmask) -> None:
    """Sets every bit (all tokens allowed)."""
    bitmask[...] = -1


@nb.njit(cache=True, nogil=True)
def _apply_rows(logits, bitmask, rows, vocab):
    neg = -np.inf
    for r in range(rows.shape[0]):
        row = rows[r]
        lrow = logits[row]
        mrow = bitmask[r if bitmask.shape[0] == rows.shape[0] else row]
        n_words = (vocab + 31) // 32
        for w in range(n_words):
            word = mrow[w]
            if word == -1:
                continue
            base = w * 32
            top = min(32, vocab - base)
            for b in range(top):
                if not (word >> b) & 1:
                    lrow[base + b] = neg


def apply_token_bitmask_inplace(logits, bitmask, *, vocab_size: int | None = None,
                                indices=None) -> None:
    """Sets to ``-inf`` the logits of the tokens the bitmask disallows.

    ``logits`` is ``(batch, vocab)`` or ``(vocab,)``: a numpy float array, or a torch tensor
    (CPU; CUDA tensors go to the CUDA kernel). ``bitmask`` is ``(batch, words)``
    or ``(words,)``. With ``indices``, only those logits rows are masked, and bitmask row ``i``
    of the batch is read for logits row ``indices[i]`` when the bitmask has one row per index,
    else bitmask row ``indices[i]``. Columns from ``vocab_size`` on (default: the smaller of
    the logits width and 32 times the bitmask's words) are left untouched.
    """
    if _is_torch(logits):
        _apply_torch(logits, bitmask, vocab_size, indices)
        return
    logits_np = logits
    if not isinstance(logits_np, np.ndarray):
        raise TypeError(f"logits must be a numpy array or torch tensor, got {type(logits).__name__}")
    bm = np.asarray(bitmask)
    if bm.dtype != np.int32:
        raise TypeError(f"bitmask must be int32, got {bm.dtype}")
    l2 = logits_np[None, :] if logits_np.ndim == 1 else logits_np
    b2 = bm[None, :] if bm.ndim == 1 else bm
    if l2.ndim != 2 or b2.ndim != 2:
        raise ValueError("logits and bitmask must be 1-D or 2-D")
    vocab = min(l2.shape[1], b2.shape[1] * 32)
    if vocab_size is not None:
        vocab = min(vocab, int(vocab_size))
    rows = (np.arange(l2.shape[0], dtype=np.int64) if indices is None
            else np.asarray(indices, dtype=np.int64).reshape(-1))
    if rows.size and (rows.min() < 0 or rows.max() >= l2.shape[0]):
        raise IndexError("indices out of range of the logits batch")
    if b2.shape[0] != rows.shape[0] and (rows.size and rows.max() >= b2.shape[0]):
        raise ValueError(
            f"bitmask has {b2.shape[0]} rows, not enough for the logits rows {rows.tolist()}"
        )
    if l2.dtype in (np.float32, np.float64):
        _apply_rows(l2, b2, rows, vocab)
        return
    # other float dtypes (float16): through a boolean mask
    for i, row in enumerate(rows):
        mrow = b2[i if b2.shape[0] == rows.shape[0] else row]
        allowed = unpack_bitmask(mrow, vocab)
        l2[row, :vocab][~allowed] = -np.inf


def unpack_bitmask(row: np.ndarray, vocab_size: int) -> np.ndarray:
    """A boolean array of length ``vocab_size``: True where the token is allowed."""
    bits = np.unpackbits(np.ascontiguousarray(row).view(np.uint8), bitorder="little")
    out = np.zeros(vocab_size, dtype=bool)
    n = min(vocab_size, bits.shape[0])
    out[:n] = bits[:n].astype(bool)
    return out


def _is_torch(x) -> bool:
    mod = type(x).__module__
    return mod.startswith("torch")


def _apply_torch(logits, bitmask, vocab_size, indices) -> None:
    import torch

    if logits.device.type == "cuda":
        from .bitmask_cuda import apply_token_bitmask_inplace_cuda

        apply_token_bitmask_inplace_cuda(logits, bitmask, vocab_size=vocab_size, indices=indices)
        return
    bm = bitmask.numpy() if isinstance(bitmask, torch.Tensor) else np.asarray(bitmask)
    if logits.dtype in (torch.float32, torch.float64) and logits.is_contiguous():
        apply_token_bitmask_inplace(logits.numpy(), bm, vocab_size=vocab_size, indices=indices)
        return
    l2 = logits.unsqueeze(0) if logits.dim() == 1 else logits
    b2 = bm[None, :] if bm.ndim == 1 else bm
    vocab = min(l2.shape[1], b2.shape[1] * 32)
    if vocab_size is not None:
        vocab = min(vocab, int(vocab_size))
    rows = range(l2.shape[0]) if indices is None else [int(i) for i in indices]
    for i, row in enumerate(rows):
        mrow = b2[i if b2.shape[0] == len(rows) else row]
        allowed = torch.from_numpy(unpack_bitmask(mrow, vocab))
        l2[row, :vocab].masked_fill_(~allowed, float("-inf"))
