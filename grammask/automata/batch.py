"""Batches of matchers: fill many bitmask rows on several threads, accept a token per row.

The whole batch is filled by one Numba call (no GIL) over a table of the matchers' array
addresses (matcher_kernels.m_fill_table). On several threads, the calling thread posts the
batch to a pool of worker threads that wait inside a Numba call (matcher_kernels, "the batch
fill pool") and fills rows with them, each row taken by one thread; it waits only for rows
others have taken, so workers still asleep when the rows run out cost nothing. The rare rows
that need Python (a cache entry to build, a buffer to grow, a terminated matcher) are then
filled one by one.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from collections.abc import Sequence

import numpy as np

from ..mask_kernels import earley as E
from ..mask_kernels import matcher_kernels as MK
from .matcher import GrammarMatcher, numpy_bitmask

#: A batch of fewer rows is filled on the calling thread alone (a row costs ~1-5 us; waking
#: a worker costs a few us on the calling thread).
MIN_ROWS_PARALLEL = 32
#: How long a worker keeps polling for the next batch before it goes to sleep (us). Fills
#: that come faster (a small model, speculative decoding, several batches per step) find the
#: workers awake; slower ones pay the wake-up, which overlaps the calling thread's own rows.
SPIN_US = 200.0


class _FillPool:
    """``workers`` threads serving batch fills posted in ``ctrl`` (one poster at a time)."""

    def __init__(self, workers: int) -> None:
        self.ctrl = np.zeros(MK.P_SIZE, dtype=np.int64)
        self.lock = threading.Lock()
        # wake-ups are counted, not flagged: a worker that decided to sleep sleeps only while
        # the count is what it read before deciding (an Event cleared by one worker could
        # swallow the wake-up another had not yet waited for)
        self._wake = threading.Condition()
        self._wakes = 0
        MK.pool_spin(self.ctrl, 100)
        # load the wake-up kernel now (on a scratch copy): a worker's first wake-up would
        # otherwise load it in the middle of a fill, and warm-up could not see it coming
        MK.pool_woken(self.ctrl.copy())
        t0 = time.perf_counter()
        MK.pool_spin(self.ctrl, 20000)
        per_poll_us = max((time.perf_counter() - t0) / 20000 * 1e6, 1e-3)
        self._polls = int(SPIN_US / per_poll_us) + 1
        self._threads = [threading.Thread(target=self._serve, name=f"grammask-fill-{k}",
                                          daemon=True) for k in range(workers)]
        for t in self._threads:
            t.start()

    def _serve(self) -> None:
        ctrl = self.ctrl
        while True:
            seen = self._wakes
            if MK.pool_serve(ctrl, self._polls):
                return
            with self._wake:
                while self._wakes == seen:
                    self._wake.wait()
            MK.pool_woken(ctrl)

    def _wake_all(self) -> None:
        with self._wake:
            self._wakes += 1
            self._wake.notify_all()

    def fill(self, table, rows, bm_addr: int, bm_stride: int, bm_words: int, status) -> int:
        ctrl = self.ctrl
        if ctrl[MK.P_SLEEPING] > 0:
            self._wake_all()
        return MK.pool_fill(ctrl, table, rows, bm_addr, bm_stride, bm_words, status)

    def stop(self) -> None:
        self.ctrl[MK.P_STOP] = 1
        self._wake_all()
        for t in self._threads:
            t.join(timeout=1.0)


_pools: dict[int, _FillPool] = {}
_pools_lock = threading.Lock()


def _pool(workers: int) -> _FillPool:
    pool = _pools.get(workers)
    if pool is None:
        with _pools_lock:
            pool = _pools.get(workers)
            if pool is None:
                pool = _pools[workers] = _FillPool(workers)
    return pool


@atexit.register
def _stop_pools() -> None:
    # workers poll arrays that interpreter shutdown frees: they return before it
    with _pools_lock:
        for pool in _pools.values():
            pool.stop()
        _pools.clear()


def _forget_pools() -> None:
    # a forked child has none of the parent's threads; it starts its own pools when needed
    global _pools_lock
    _pools.clear()
    _pools_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools)


def _default_threads() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _as_bitmask(bitmask) -> np.ndarray:
    """The int32 bitmask as a 2-D numpy array with contiguous rows (a view, never a copy)."""
    bitmask = numpy_bitmask(bitmask)
    if bitmask.ndim == 1:
        bitmask = bitmask.reshape(1, -1)
    if bitmask.ndim != 2 or (bitmask.shape[1] > 1 and bitmask.strides[1] != 4):
        raise ValueError(f"the bitmask must be 2-D with contiguous rows, got shape "
                         f"{bitmask.shape} and strides {bitmask.strides}")
    return bitmask


class BatchGrammarMatcher:
    """Fills the bitmasks of a batch of :class:`GrammarMatcher` objects in parallel.

    ``max_threads=-1`` uses up to 8 threads (at most the CPU count). The matchers may belong
    to different compiled grammars; each row of the bitmask is written by one thread.
    """

    def __init__(self, max_threads: int = -1) -> None:
        self._threads = _default_threads() if max_threads in (-1, 0, None) else int(max_threads)
        if self._threads < 1:
            raise ValueError(f"max_threads must be positive or -1, got {max_threads}")
        self._arange = np.arange(0, dtype=np.int64)
        self._bitmask: tuple = (None, None, 0)  # the last bitmask, its numpy view and address

    @property
    def max_threads(self) -> int:
        return self._threads

    def batch_fill_next_token_bitmask(self, matchers: Sequence[GrammarMatcher], bitmask,
                                      indices: Sequence[int] | None = None, *,
                                      debug_print: bool = False) -> list[bool]:
        """Fills row ``indices[i]`` (default ``i``) of ``bitmask`` for ``matchers[i]``.
        Returns, per matcher, whether its row must be applied (False: all tokens allowed)."""
        n = len(matchers)
        if n == 0:
            return []
        if bitmask is self._bitmask[0]:
            bm, bm_addr = self._bitmask[1], self._bitmask[2]
        else:
            bm = _as_bitmask(bitmask)
            bm_addr = bm.ctypes.data
            self._bitmask = (bitmask, bm, bm_addr)
        n_rows = bm.shape[0]
        if indices is None:
            if n > n_rows:
                raise ValueError(f"{n} matchers but the bitmask has {n_rows} rows")
            if self._arange.shape[0] < n:
                self._arange = np.arange(n, dtype=np.int64)
            rows = self._arange[:n]
        else:
            rows = np.asarray(indices, dtype=np.int64).reshape(-1)
            if rows.shape[0] != n:
                raise ValueError(f"{n} matchers but {rows.shape[0]} indices")
            if rows.min() < -n_rows or rows.max() >= n_rows:
                raise IndexError(f"bitmask row index out of range for {n_rows} rows: "
                                 f"{rows.min() if rows.min() < -n_rows else rows.max()}")
            rows = np.where(rows < 0, rows + n_rows, rows)
            if np.unique(rows).shape[0] != n:
                raise ValueError("indices must be distinct: two matchers would write one row")
        table = np.frombuffer(b"".join([m._part or m._make_part() for m in matchers]),
                              dtype=np.int64).reshape(n, MK.A_COLUMNS)
        status = np.empty(n, dtype=np.int32)
        args = (table, rows, bm_addr, bm.strides[0], bm.shape[1], status)
        pool = (_pool(self._threads - 1)
                if self._threads > 1 and MIN_ROWS_PARALLEL <= n <= MK.POOL_MAX_ROWS else None)
        # a pool busy with another thread's batch: this one is filled on its own thread
        if pool is not None and pool.lock.acquire(blocking=False):
            try:
                unfilled = pool.fill(*args)
            finally:
                pool.lock.release()
        else:
            unfilled = MK.m_fill_table(*args)
        out = (status == E.OK).tolist()
        if unfilled:
            # skipped, a cache entry to build, a buffer to grow: through the matcher, whose
            # next part is made anew (it may name cache arrays that were replaced since)
            for i in np.flatnonzero((status != E.OK) & (status != MK.OK_ALL_ALLOWED)).tolist():
                m = matchers[i]
                out[i] = m.fill_next_token_bitmask(bm, int(rows[i]))
                m._part = None
        return out

    @staticmethod
    def batch_accept_token(matchers: Sequence[GrammarMatcher], tokens: Sequence[int]
                           ) -> list[bool]:
        """``matchers[i].accept_token(tokens[i])`` for every i."""
        if len(matchers) != len(tokens):
            raise ValueError(f"{len(matchers)} matchers but {len(tokens)} tokens")
        return [m.accept_token(t) for m, t in zip(matchers, tokens)]

    @staticmethod
    def batch_accept_string(matchers: Sequence[GrammarMatcher], strings: Sequence[str | bytes]
                            ) -> list[bool]:
        """``matchers[i].accept_string(strings[i])`` for every i."""
        if len(matchers) != len(strings):
            raise ValueError(f"{len(matchers)} matchers but {len(strings)} strings")
        return [m.accept_string(s) for m, s in zip(matchers, strings)]

    def close(self) -> None:
        """Kept for compatibility: the worker threads are shared by the process (one pool per
        thread count) and stop at exit."""


_shared: dict[int, BatchGrammarMatcher] = {}
_shared_lock = threading.Lock()


def batch_fill_next_token_bitmask(matchers: Sequence[GrammarMatcher], bitmask,
                                  indices: Sequence[int] | None = None, *,
                                  max_threads: int = -1) -> list[bool]:
    """Module-level shortcut for :meth:`BatchGrammarMatcher.batch_fill_next_token_bitmask`
    (one shared batch object per thread count)."""
    key = _default_threads() if max_threads in (-1, 0, None) else int(max_threads)
    with _shared_lock:
        batch = _shared.get(key)
        if batch is None:
            batch = _shared[key] = BatchGrammarMatcher(key)
    return batch.batch_fill_next_token_bitmask(matchers, bitmask, indices)
