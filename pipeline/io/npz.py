"""Deterministic NPZ files: the same arrays give the same bytes (fixed zip timestamps and order),
written atomically (temporary name, then ``os.replace``), read without pickle."""

from __future__ import annotations

import io
import json
import os
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Mapping

import numpy as np

_EPOCH = (1980, 1, 1, 0, 0, 0)


#: deflate level: 1 is ~4x faster than zlib's default 6 and within ~10% of its size on piano-rolls
COMPRESS_LEVEL = 1


def _npy_bytes(arr: np.ndarray) -> bytes:
    """An .npy file in memory (format 1.0, C order), as ``np.save`` writes it, minus its overhead."""
    arr = np.ascontiguousarray(arr)
    header = np.lib.format.header_data_from_array_1_0(arr)
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + arr.tobytes()


def npz_bytes(arrays: Mapping[str, np.ndarray], extra: Mapping[str, bytes] | None = None) -> bytes:
    """Serialise ``arrays`` (as ``name.npy``) and raw ``extra`` members, deflated, in the order given.

    A minimal zip writer (fixed 1980-01-01 timestamps, no extra fields): the same arrays always
    give the same bytes, and a song's 20-odd members cost far less than through ``zipfile``.
    """
    members: list[tuple[str, bytes]] = []
    for name, arr in arrays.items():
        arr = np.asarray(arr)
        if arr.dtype == object:
            raise TypeError(f"array {name!r} has dtype object; NPZ shards never hold pickles")
        members.append((f"{name}.npy", _npy_bytes(arr)))
    members += list((extra or {}).items())
    if sum(len(b) for _, b in members) >= 0xFFFFFFFF:  # beyond plain zip: let zipfile do zip64
        return _npz_bytes_zip64(members)
    out = bytearray()
    central = bytearray()
    for name, blob in members:
        fname = name.encode()
        comp = zlib.compressobj(COMPRESS_LEVEL, zlib.DEFLATED, -15)
        data = comp.compress(blob) + comp.flush()
        crc = zlib.crc32(blob)
        offset = len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, _DOS_DATE, crc, len(data), len(blob), len(fname), 0)
        out += fname
        out += data
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, _DOS_DATE, crc, len(data),
                               len(blob), len(fname), 0, 0, 0, 0, 0o644 << 16, offset)
        central += fname
    cd_offset = len(out)
    out += central
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central), cd_offset, 0)
    return bytes(out)


_DOS_DATE = (0 << 9) | (1 << 5) | 1  # 1980-01-01


def _npz_bytes_zip64(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL, allowZip64=True) as zf:
        for name, blob in members:
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, blob, compresslevel=COMPRESS_LEVEL)
    return buf.getvalue()


def atomic_write_bytes(path: Path, blob: bytes) -> None:
    """Write ``blob`` to ``path`` so that no reader ever sees a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_npz(path: Path, arrays: Mapping[str, np.ndarray], extra: Mapping[str, bytes] | None = None) -> None:
    atomic_write_bytes(path, npz_bytes(arrays, extra))


def pianoroll_npz_bytes(pr, name: str) -> bytes:
    """A ``Pianoroll`` in pypianoroll's NPZ format (what ``pypianoroll.load`` 1.0 reads, and the
    LPD layout): ``tempo``, ``downbeat``, ``pianoroll_<i>_csc_{data,indices,indptr,shape}`` per
    track and an ``info.json`` with resolution, name, program, is_drum and track names."""
    arrays: dict[str, np.ndarray] = {
        "tempo": pr.tempo.astype(np.float64),
        "downbeat": pr.downbeat.astype(bool),
    }
    info: dict = {"resolution": pr.resolution, "beat_resolution": pr.resolution, "name": name}
    for k in range(pr.n_tracks):
        m = pr.cell_track == k
        pitch = pr.cell_pitch[m]
        indptr = np.zeros(129, np.int32)
        np.cumsum(np.bincount(pitch, minlength=128), out=indptr[1:])
        arrays[f"pianoroll_{k}_csc_data"] = pr.cell_velocity[m].astype(np.uint8)
        arrays[f"pianoroll_{k}_csc_indices"] = pr.cell_time[m].astype(np.int32)
        arrays[f"pianoroll_{k}_csc_indptr"] = indptr
        arrays[f"pianoroll_{k}_csc_shape"] = np.array([pr.n_steps, 128], np.int64)
        info[str(k)] = {"program": pr.track_programs[k], "is_drum": pr.track_is_drum[k], "name": pr.track_names[k]}
    return npz_bytes(arrays, {"info.json": json.dumps(info, sort_keys=True).encode()})


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
