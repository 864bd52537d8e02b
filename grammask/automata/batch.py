"""Batches of matchers: fill many bitmask rows on several threads, accept a token per row.

Each thread takes a contiguous slice of the batch and fills it in one Numba call (no GIL),
from a table of the matchers' array addresses (matcher_kernels.m_fill_table); the rare rows
that need Python (a cache entry to build, a buffer to grow, a terminated matcher) are then
filled one by one.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..mask_kernels import earley as E
from ..mask_kernels import matcher_kernels as MK
from .matcher import GrammarMatcher

_SKIP_ROW = bytes(8 * MK.A_COLUMNS)

#: Rows a thread must have before a batch fill is split (a cached row costs ~1-5 us).
MIN_ROWS_PER_THREAD = 64


def _default_threads() -> int:
    return max(1, min(8, os.cpu_count() or 1))


class BatchGrammarMatcher:
    """Fills the bitmasks of a batch of :class:`GrammarMatcher` objects in parallel.

    ``max_threads=-1`` uses up to 8 threads (at most the CPU count). The matchers may belong
    to different compiled grammars; each row of the bitmask is written by one thread.
    """

    def __init__(self, max_threads: int = -1) -> None:
        self._threads = _default_threads() if max_threads in (-1, 0, None) else int(max_threads)
        if self._threads < 1:
            raise ValueError(f"max_threads must be positive or -1, got {max_threads}")
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    @property
    def max_threads(self) -> int:
        return self._threads

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="grammask")
            return self._pool

    def batch_fill_next_token_bitmask(self, matchers: Sequence[GrammarMatcher], bitmask,
                                      indices: Sequence[int] | None = None, *,
                                      debug_print: bool = False) -> list[bool]:
        """Fills row ``indices[i]`` (default ``i``) of ``bitmask`` for ``matchers[i]``.
        Returns, per matcher, whether its row must be applied (False: all tokens allowed)."""
        n = len(matchers)
        rows = list(range(n)) if indices is None else [int(i) for i in indices]
        if len(rows) != n:
            raise ValueError(f"{n} matchers but {len(rows)} indices")
        if len(set(rows)) != n:
            raise ValueError("indices must be distinct: two matchers would write one row")
        out = [False] * n
        # a slice of fewer rows costs less than handing it to another thread (~30 us here)
        threads = max(1, min(self._threads, n // MIN_ROWS_PER_THREAD))
        # rows of zeros (matchers the kernel must skip) where a matcher gives None
        table = np.frombuffer(b"".join([m._addresses(bitmask, r) or _SKIP_ROW
                                        for m, r in zip(matchers, rows)]),
                              dtype=np.int64).reshape(n, MK.A_COLUMNS)
        status = np.empty(n, dtype=np.int32)
        if threads <= 1:
            MK.m_fill_table(table, 0, n, status)
        else:
            bounds = [n * t // threads for t in range(threads + 1)]
            pool = self._executor()
            futures = [pool.submit(MK.m_fill_table, table, bounds[t], bounds[t + 1], status)
                       for t in range(1, threads)]
            MK.m_fill_table(table, bounds[0], bounds[1], status)
            for f in futures:
                f.result()
        for i, r in enumerate(status.tolist()):
            if r == E.OK:
                out[i] = True
            elif r != MK.OK_ALL_ALLOWED:  # skipped, a cache entry to build, a buffer to grow
                out[i] = matchers[i].fill_next_token_bitmask(bitmask, rows[i])
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
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def __del__(self):
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False)


_shared: dict[int, BatchGrammarMatcher] = {}
_shared_lock = threading.Lock()


def batch_fill_next_token_bitmask(matchers: Sequence[GrammarMatcher], bitmask,
                                  indices: Sequence[int] | None = None, *,
                                  max_threads: int = -1) -> list[bool]:
    """Module-level shortcut for :meth:`BatchGrammarMatcher.batch_fill_next_token_bitmask`
    (one shared thread pool per thread count)."""
    key = _default_threads() if max_threads in (-1, 0, None) else int(max_threads)
    with _shared_lock:
        batch = _shared.get(key)
        if batch is None:
            batch = _shared[key] = BatchGrammarMatcher(key)
    return batch.batch_fill_next_token_bitmask(matchers, bitmask, indices)
