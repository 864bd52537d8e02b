"""Where Numba caches the compiled kernels: one folder per version of the kernel sources.

Numba keys a cached function on its own file's timestamp only. A kernel inlines kernels of
other modules, so after an edit (or a ``git pull`` into an editable install) a file that did
not change can load machine code built against the old version of another: wrong results or
a crash. The kernels here are therefore cached under a folder named by a digest of every
source file that holds Numba code; any change to one of them starts a fresh folder.

The folder is ``$NUMBA_CACHE_DIR/grammask-kernels-<digest>`` when NUMBA_CACHE_DIR is set, else
``$XDG_CACHE_HOME/grammask/numba/kernels-<digest>`` (``~/.cache`` by default). Numba falls
back to compiling without a cache (or to ``__pycache__``) when the folder is not writable.
This must run before any module with ``cache=True`` kernels is imported.
"""

from __future__ import annotations

import hashlib
import os

_MARKERS = (b"njit", b"cuda.jit", b"nb.jit", b"@jit")


def kernel_digest(package_dir: str) -> str:
    """A digest of the package's source files that contain Numba code."""
    h = hashlib.sha256()
    for root, dirs, files in os.walk(package_dir):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = os.path.join(root, name)
            with open(path, "rb") as fh:
                data = fh.read()
            if any(m in data for m in _MARKERS):
                h.update(os.path.relpath(path, package_dir).encode())
                h.update(len(data).to_bytes(8, "little"))
                h.update(data)
    return h.hexdigest()[:16]


def configure() -> None:
    import numba

    digest = kernel_digest(os.path.dirname(os.path.abspath(__file__)))
    user = os.environ.get("NUMBA_CACHE_DIR")
    if user:
        folder = os.path.join(user, f"grammask-kernels-{digest}")
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        folder = os.path.join(base, "grammask", "numba", f"kernels-{digest}")
    numba.config.CACHE_DIR = folder
