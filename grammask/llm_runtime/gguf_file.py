"""Reading a GGUF file: metadata, tensor directory, memory-mapped tensor bytes.

The file is memory-mapped once; tensors are views into the mapping, so weights stay
quantized and are paged in on first use. The format facts (value types, quantization type
ids and block sizes) are those of the GGUF specification; the `gguf` package's own
``GGUFReader`` gives the same answers (the tests compare them), but it materializes every
vocabulary string and merge as a numpy object, which costs seconds and ~160 MB on a 49k
vocabulary. This reader parses the header with ``struct`` and keeps arrays of numbers as
numpy views.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass

import numpy as np

from ..errors import ModelFormatError

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32

# Quantization type ids of the GGUF format -> (name, elements per block, bytes per block).
QUANT_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),
    12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210),
    30: ("BF16", 1, 2),
}
QUANT_IDS = {name: tid for tid, (name, _, _) in QUANT_TYPES.items()}

# Types the format defines that this runtime does not compute with (named in errors).
_OTHER_QUANT_NAMES = {
    9: "Q8_1",
    10: "Q2_K",
    11: "Q3_K",
    15: "Q8_K",
    16: "IQ2_XXS",
    17: "IQ2_XS",
    18: "IQ3_XXS",
    19: "IQ1_S",
    20: "IQ4_NL",
    21: "IQ3_S",
    22: "IQ2_S",
    23: "IQ4_XS",
    24: "I8",
    25: "I16",
    26: "I32",
    27: "I64",
    28: "F64",
    29: "IQ1_M",
    34: "TQ1_0",
    35: "TQ2_0",
    39: "MXFP4",
}

# Metadata value types: id -> struct format of a scalar (8 = string, 9 = array).
_SCALAR_FORMATS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_ARRAY_DTYPES = {
    0: np.uint8,
    1: np.int8,
    2: np.uint16,
    3: np.int16,
    4: np.uint32,
    5: np.int32,
    6: np.float32,
    7: np.bool_,
    10: np.uint64,
    11: np.int64,
    12: np.float64,
}


def quant_type_name(type_id: int) -> str:
    """The GGUF name of a quantization type id (``"Q4_1"``), or ``"type <id>"``."""
    if type_id in QUANT_TYPES:
        return QUANT_TYPES[type_id][0]
    return _OTHER_QUANT_NAMES.get(type_id, f"type {type_id}")


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of the file: GGUF dims are innermost first, ``shape`` is numpy order."""

    name: str
    shape: tuple[int, ...]
    type_id: int
    offset: int  # absolute byte offset in the file
    nbytes: int

    @property
    def type_name(self) -> str:
        return quant_type_name(self.type_id)


class GGUFFile:
    """A memory-mapped GGUF file: ``metadata`` (dict), ``tensors`` (name -> TensorInfo).

    ``data`` is the whole file as a read-only uint8 array; ``tensor_bytes(name)`` is the
    slice holding one tensor. Raises ModelFormatError (naming the file and what is wrong)
    for a file that is not GGUF, is truncated, or whose directory is inconsistent.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = os.fspath(path)
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size < 24:
                    raise ModelFormatError(f"{self.path}: file too small to be GGUF ({size} bytes)")
                self._mmap = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as e:
            raise ModelFormatError(f"{self.path}: cannot open: {e}") from e
        self.size = size
        self.data = np.frombuffer(self._mmap, dtype=np.uint8)
        self.metadata: dict[str, object] = {}
        self.tensors: dict[str, TensorInfo] = {}
        try:
            self._parse()
        except (struct.error, UnicodeDecodeError, IndexError, ValueError) as e:
            if isinstance(e, ModelFormatError):
                raise
            raise ModelFormatError(f"{self.path}: corrupted or truncated GGUF header ({e})") from e

    # -- header parsing ----------------------------------------------------------------
    def _parse(self) -> None:
        buf = self._mmap
        if buf[:4] != GGUF_MAGIC:
            raise ModelFormatError(f"{self.path}: not a GGUF file (magic {bytes(buf[:4])!r})")
        version, n_tensors, n_kv = struct.unpack_from("<IQQ", buf, 4)
        if version not in (2, 3):
            raise ModelFormatError(f"{self.path}: unsupported GGUF version {version}")
        self.version = version
        pos = 24
        for _ in range(n_kv):
            key, pos = self._read_string(pos)
            (vtype,), pos = struct.unpack_from("<I", buf, pos), pos + 4
            value, pos = self._read_value(vtype, pos, key)
            self.metadata[key] = value
        infos = []
        for _ in range(n_tensors):
            name, pos = self._read_string(pos)
            (n_dims,) = struct.unpack_from("<I", buf, pos)
            pos += 4
            if n_dims > 8:
                raise ModelFormatError(f"{self.path}: tensor {name!r} has {n_dims} dimensions")
            dims = struct.unpack_from(f"<{n_dims}Q", buf, pos)
            pos += 8 * n_dims
            type_id, rel = struct.unpack_from("<IQ", buf, pos)
            pos += 12
            infos.append((name, dims, type_id, rel))
        align = int(self.metadata.get("general.alignment", DEFAULT_ALIGNMENT))
        if align <= 0 or align & (align - 1):
            raise ModelFormatError(f"{self.path}: invalid general.alignment {align}")
        data_start = (pos + align - 1) // align * align
        self.data_start = data_start
        for name, dims, type_id, rel in infos:
            shape = tuple(int(d) for d in reversed(dims))
            n_el = int(np.prod(shape, dtype=np.int64)) if shape else 1
            if type_id in QUANT_TYPES:
                _, block, bsize = QUANT_TYPES[type_id]
                if dims and dims[0] % block:
                    raise ModelFormatError(
                        f"{self.path}: tensor {name!r}: row length {dims[0]} is not a multiple "
                        f"of the {quant_type_name(type_id)} block size {block}"
                    )
                nbytes = n_el // block * bsize
            else:
                nbytes = 0  # unknown type: size unknown, rejected when the tensor is used
            offset = data_start + int(rel)
            if offset + nbytes > self.size:
                raise ModelFormatError(
                    f"{self.path}: truncated: tensor {name!r} needs bytes {offset}..{offset + nbytes}"
                    f" but the file has {self.size}"
                )
            self.tensors[name] = TensorInfo(name, shape, int(type_id), offset, nbytes)

    def _read_string(self, pos: int) -> tuple[str, int]:
        (n,) = struct.unpack_from("<Q", self._mmap, pos)
        pos += 8
        if pos + n > self.size:
            raise ModelFormatError(f"{self.path}: truncated GGUF header (string at byte {pos})")
        return self._mmap[pos : pos + n].decode("utf-8"), pos + n

    def _read_value(self, vtype: int, pos: int, key: str):
        buf = self._mmap
        if vtype == 8:
            return self._read_string(pos)
        if vtype in _SCALAR_FORMATS:
            fmt = _SCALAR_FORMATS[vtype]
            return struct.unpack_from(fmt, buf, pos)[0], pos + struct.calcsize(fmt)
        if vtype == 9:
            etype, n = struct.unpack_from("<IQ", buf, pos)
            pos += 12
            if etype == 8:
                out = []
                for _ in range(n):
                    s, pos = self._read_string(pos)
                    out.append(s)
                return out, pos
            if etype in _ARRAY_DTYPES:
                dt = np.dtype(_ARRAY_DTYPES[etype])
                end = pos + n * dt.itemsize
                if end > self.size:
                    raise ModelFormatError(f"{self.path}: truncated GGUF header (array {key!r})")
                return np.frombuffer(buf, dtype=dt, count=n, offset=pos), end
            raise ModelFormatError(f"{self.path}: metadata {key!r}: unsupported array type {etype}")
        raise ModelFormatError(f"{self.path}: metadata {key!r}: unknown value type {vtype}")

    # -- access ------------------------------------------------------------------------
    def tensor(self, name: str) -> TensorInfo:
        """The TensorInfo of ``name``; ModelFormatError if the file has no such tensor."""
        try:
            return self.tensors[name]
        except KeyError:
            raise ModelFormatError(f"{self.path}: missing tensor {name!r}") from None

    def tensor_bytes(self, name: str) -> np.ndarray:
        """The raw (still quantized) bytes of a tensor, a view into the mapping."""
        t = self.tensor(name)
        return self.data[t.offset : t.offset + t.nbytes]

    def close(self) -> None:
        """Drop the mapping (arrays viewing it must be gone first)."""
        self.data = None  # type: ignore[assignment]
        try:
            self._mmap.close()
        except BufferError:
            pass  # numpy views are still alive; the mapping goes when they do
