"""Numba kernels that index a byte-sorted vocabulary for the mask walk."""

from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True, nogil=True)
def build_lcp(tok_bytes, tok_ptr):
    """``lcp[i]`` = length of the common prefix of sorted tokens i-1 and i (``lcp[0] = 0``)."""
    n = tok_ptr.shape[0] - 1
    lcp = np.zeros(n, dtype=np.int32)
    for i in range(1, n):
        a, b = tok_ptr[i - 1], tok_ptr[i]
        la, lb = tok_ptr[i] - a, tok_ptr[i + 1] - b
        m = min(la, lb)
        k = 0
        while k < m and tok_bytes[a + k] == tok_bytes[b + k]:
            k += 1
        lcp[i] = k
    return lcp


@nb.njit(cache=True, nogil=True)
def build_skip(tok_ptr, lcp):
    """``skip[tok_ptr[i] + d]`` = the first j > i with lcp[j] <= d (n when none)."""
    n = tok_ptr.shape[0] - 1
    skip = np.empty(tok_ptr[n], dtype=np.int32)
    # stack of indices whose lcp values strictly decrease from top to bottom:
    # the prefix minima of lcp[i+1:], nearest first
    stack = np.empty(n + 1, dtype=np.int32)
    top = 0
    for i in range(n - 1, -1, -1):
        # candidates for token i are i+1 and the prefix minima after it
        j = i + 1
        if j < n:
            while top > 0 and lcp[stack[top - 1]] >= lcp[j]:
                top -= 1
            stack[top] = j
            top += 1
        length = tok_ptr[i + 1] - tok_ptr[i]
        # larger thresholds are met nearer: walk d downwards, deeper into the stack
        pos = top - 1
        for d in range(length - 1, -1, -1):
            while pos >= 0 and lcp[stack[pos]] > d:
                pos -= 1
            skip[tok_ptr[i] + d] = stack[pos] if pos >= 0 else n
    return skip
