"""Batches of matchers: fill many bitmask rows on several threads, accept a token per row.

The mask kernels release the GIL, so plain threads run them in parallel; each thread takes
a contiguous slice of the batch, so the Python work between kernel calls stays small.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from .matcher import GrammarMatcher


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
        threads = min(self._threads, n)
        if threads <= 1:
            _fill_range(matchers, bitmask, rows, out, 0, n)
            return out
        bounds = [n * t // threads for t in range(threads + 1)]
        pool = self._executor()
        futures = [pool.submit(_fill_range, matchers, bitmask, rows, out, bounds[t],
                               bounds[t + 1]) for t in range(1, threads)]
        _fill_range(matchers, bitmask, rows, out, bounds[0], bounds[1])
        for f in futures:
            f.result()
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


def _fill_range(matchers, bitmask, rows, out, lo: int, hi: int) -> None:
    for i in range(lo, hi):
        out[i] = matchers[i].fill_next_token_bitmask(bitmask, rows[i])


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
