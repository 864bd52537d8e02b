"""The Numba cache folder follows the kernel sources (grammask._kernel_cache)."""

from __future__ import annotations

import os

import numba

import grammask
from grammask._kernel_cache import kernel_digest


def test_digest_follows_kernel_sources_only(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    kernel = "import numba as nb\n@nb.njit(cache=True)\ndef f(x):\n    return {}\n"
    (pkg / "kern.py").write_text(kernel.format("x"))
    (pkg / "sub" / "other.py").write_text("def g():\n    return 1\n")
    d0 = kernel_digest(str(pkg))
    (pkg / "sub" / "other.py").write_text("def g():\n    return 2\n")  # no Numba code
    assert kernel_digest(str(pkg)) == d0
    (pkg / "kern.py").write_text(kernel.format("x * 2"))
    d1 = kernel_digest(str(pkg))
    assert d1 != d0
    (pkg / "sub" / "k2.py").write_text("from numba import njit\n")
    assert kernel_digest(str(pkg)) != d1


def test_grammask_kernels_cache_in_their_digest_folder():
    from grammask.mask_kernels import matcher_kernels as MK

    digest = kernel_digest(os.path.dirname(grammask.__file__))
    assert digest in numba.config.CACHE_DIR
    assert MK.m_fill._cache._cache_path.startswith(numba.config.CACHE_DIR)
