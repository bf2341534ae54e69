"""Deterministic NPZ files: the same arrays give the same bytes (fixed zip timestamps and order),
written atomically (temporary name, then ``os.replace``), read without pickle."""

from __future__ import annotations

import functools
import io
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np
from isal import isal_zlib

from pipeline.files import atomic_write_bytes


_EPOCH = (1980, 1, 1, 0, 0, 0)


#: ISA-L deflate level (0-3) of every member. ISA-L (``isal``) writes standard deflate streams that
#: any zip reader, numpy's included, decodes; at level 1 it deflates song piano-rolls ~3.5x and
#: MuseGAN ``nonzero`` arrays ~7x faster than zlib's level 1, for song files ~40% larger.
COMPRESS_LEVEL = 1
#: members of at most this many bytes (an .npy header is 128) are stored, not deflated: a deflate
#: stream of a few bytes costs ~8 us and saves nothing
STORE_BYTES = 256
#: zlib level for the zip64 fallback (archives over 4 GiB, through ``zipfile``)
ZIP64_LEVEL = 1


_NPY_MAGIC = b"\x93NUMPY\x01\x00"  # .npy format 1.0


def npy_header(dtype, shape: tuple[int, ...]) -> bytes:
    """The .npy format 1.0 header of a C-contiguous array of ``dtype`` and ``shape``, byte for
    byte as ``np.save`` writes it (sorted keys, room to grow the first axis, padded to 64
    bytes), without numpy's file object."""
    return _npy_header(np.dtype(dtype).str, tuple(int(n) for n in shape))


@functools.lru_cache(maxsize=4096)
def _npy_header(descr: str, shape: tuple[int, ...]) -> bytes:
    text = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': {shape!r}, }}"
    if shape:
        text += " " * (21 - len(repr(shape[0])))  # numpy's GROWTH_AXIS_MAX_DIGITS
    hlen = len(text) + 1
    pad = 64 - ((len(_NPY_MAGIC) + 2 + hlen) % 64)
    return _NPY_MAGIC + struct.pack("<H", hlen + pad) + text.encode("latin1") + b" " * pad + b"\n"


@dataclass(frozen=True)
class ChunkedArray:
    """An array given as parts: C-order pieces whose bytes, one after another, make an array
    of ``shape`` and ``dtype``. ``parts`` is called once and may yield pieces lazily, even views
    of one reused buffer: ``npz_bytes`` deflates each piece before it asks for the next, so a
    large member is never assembled in memory."""

    dtype: np.dtype
    shape: tuple[int, ...]
    parts: Callable[[], Iterable[np.ndarray]]


def _bytes_view(arr: np.ndarray) -> memoryview:
    return memoryview(np.ascontiguousarray(arr).reshape(-1).view(np.uint8))


def _member(name: str, arr) -> tuple[str, bytes, Iterable[memoryview], int]:
    """(file name, .npy header, data pieces, data bytes) of one array member."""
    if isinstance(arr, ChunkedArray):
        dtype = np.dtype(arr.dtype)
        nbytes = int(np.prod(arr.shape, dtype=np.int64)) * dtype.itemsize

        def pieces():
            for part in arr.parts():
                if part.dtype != dtype:
                    raise TypeError(f"array {name!r}: every part must be {dtype}, not {part.dtype}")
                yield _bytes_view(part)

        return f"{name}.npy", npy_header(dtype, arr.shape), pieces(), nbytes
    arr = np.ascontiguousarray(arr)
    if arr.dtype == object:
        raise TypeError(f"array {name!r} has dtype object; NPZ shards never hold pickles")
    return f"{name}.npy", npy_header(arr.dtype, arr.shape), [_bytes_view(arr)], arr.nbytes


def npz_bytes(arrays: Mapping[str, np.ndarray | ChunkedArray], extra: Mapping[str, bytes] | None = None) -> bytes:
    """Serialise ``arrays`` (as ``name.npy``) and raw ``extra`` members, deflated, in the order given.

    A minimal zip writer (fixed 1980-01-01 timestamps, no extra fields): the same arrays always
    give the same bytes, and a song's 20-odd members cost far less than through ``zipfile``.
    Each array is deflated straight from its buffer (or its parts: ``ChunkedArray``), with no
    copy into an .npy blob first.
    """
    members = [_member(name, arr) for name, arr in arrays.items()]
    members += [(name, b"", [memoryview(blob)], len(blob)) for name, blob in (extra or {}).items()]
    if sum(len(h) + n for _, h, _, n in members) >= 0xFFFFFFFF:  # beyond plain zip: zipfile does zip64
        return _npz_bytes_zip64([(name, h + b"".join(d.tobytes() for d in ds)) for name, h, ds, _ in members])
    out = bytearray()
    central = bytearray()
    for name, header, data, nbytes in members:
        fname = name.encode()
        if len(header) + nbytes <= STORE_BYTES:  # tiny: stored as is (deflate would cost more than it saves)
            method = 0
            packed = header + b"".join(bytes(d) for d in data)
            crc = isal_zlib.crc32(packed)
            size = len(packed)
        else:
            method = 8
            comp = isal_zlib.compressobj(COMPRESS_LEVEL, isal_zlib.DEFLATED, -15)
            packed = [comp.compress(header)]
            crc = isal_zlib.crc32(header)
            size = len(header)
            for d in data:
                packed.append(comp.compress(d))
                crc = isal_zlib.crc32(d, crc)
                size += d.nbytes
            packed.append(comp.flush())
            packed = b"".join(packed)
        if size != len(header) + nbytes:
            raise ValueError(f"member {name}: its parts hold {size - len(header)} bytes, not {nbytes}")
        offset = len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, _DOS_DATE, crc, len(packed), size,
                           len(fname), 0)
        out += fname
        out += packed
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, _DOS_DATE, crc, len(packed),
                               size, len(fname), 0, 0, 0, 0, 0o644 << 16, offset)
        central += fname
    cd_offset = len(out)
    out += central
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central), cd_offset, 0)
    return bytes(out)


_DOS_DATE = (0 << 9) | (1 << 5) | 1  # 1980-01-01


def _npz_bytes_zip64(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=ZIP64_LEVEL, allowZip64=True) as zf:
        for name, blob in members:
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, blob, compresslevel=ZIP64_LEVEL)
    return buf.getvalue()


def write_npz(path: Path, arrays: Mapping[str, np.ndarray], extra: Mapping[str, bytes] | None = None) -> None:
    atomic_write_bytes(path, npz_bytes(arrays, extra))


def load_npz(path: Path, keys=None) -> dict:
    """Read the arrays of an NPZ file, never unpickling (``allow_pickle=False``).

    ``keys``: the members to read (default: all; a non-``.npy`` member such as ``info.json`` comes
    back as bytes). Every failure is a one-line domain error that names the file:

    Raises
    ------
    UnsafeFileError
        The file, or one of its members, holds a pickle (an object array: only unpickling, which
        can run arbitrary code, would read it), or the file is not an NPZ archive.
    SchemaError
        A member in ``keys`` is missing, or a member is damaged.
    """
    from pipeline.errors import SchemaError, UnsafeFileError

    path = Path(path)
    try:
        z = np.load(path, allow_pickle=False)
    except ValueError as exc:  # numpy: "Cannot load file containing pickled data when allow_pickle=False"
        raise UnsafeFileError(path, f"not an NPZ archive of plain arrays ({exc}); it is never unpickled") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise SchemaError(path, f"cannot read the NPZ archive ({type(exc).__name__}: {exc})") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise UnsafeFileError(path, "a single .npy array, not an NPZ archive")
    with z:
        names = list(z.files) if keys is None else list(keys)
        missing = [k for k in names if k not in z.files]
        if missing:
            raise SchemaError(path, f"NPZ lacks arrays {missing}", expected=names, found=list(z.files))
        out = {}
        for k in names:
            try:
                out[k] = z[k]
            except ValueError as exc:
                if "allow_pickle" in str(exc):
                    raise UnsafeFileError(path, f"member {k}.npy is an object array (pickled Python objects); NPZ "
                                                "files are read as plain arrays only and never unpickled") from None
                raise SchemaError(path, f"member {k}.npy is not a valid array ({exc})") from None
            except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
                raise SchemaError(path, f"member {k} is damaged ({type(exc).__name__}: {exc})") from None
        return out
