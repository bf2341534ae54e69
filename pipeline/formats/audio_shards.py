"""Audio clip shards: Parquet in the Hugging Face ``Audio`` layout (FLAC 16-bit bytes) and NPZ of
float32 arrays, written deterministically and atomically.

Parquet: one row per clip; ``audio`` is ``struct<bytes: binary, path: string>`` holding a whole
FLAC file (16-bit PCM, written by soundfile/libsndfile), and the schema metadata carries the
``huggingface`` key that makes ``datasets`` type the column as ``Audio(sampling_rate=44100)``.
Row groups close when their FLAC bytes reach ``row_group_bytes``; a shard rolls over to a new
part once it reaches ``shard_bytes``. NPZ: the same clips as ``audio`` float32
``(clips, samples)`` (mono) or ``(clips, 2, samples)`` (stereo), plus the metadata columns as
arrays; stored uncompressed (float audio barely deflates), never pickled.
"""

from __future__ import annotations

import contextlib

import io
import json
import os
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import schema as shard_schema
from pipeline.formats.npz import npy_header
from pipeline.files import FILE_MODE

_EPOCH = (1980, 1, 1, 0, 0, 0)

AUDIO_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])

#: metadata columns (name, arrow type, datasets dtype, meaning)
COLUMNS: list[tuple[str, pa.DataType, str, str]] = [
    ("id", pa.string(), "string", "song id: MD5 of the source file's bytes (the LMD id for MIDI)"),
    ("source", pa.string(), "string", "path of the source file inside the input folder"),
    ("clip", pa.int32(), "int32", "clip index within the song (0, 1, ...)"),
    ("sample_rate", pa.int32(), "int32", "samples per second (44100)"),
    ("channels", pa.int8(), "int8", "1 (downmixed) or 2 (downmix none: L, R)"),
    ("samples", pa.int64(), "int64", "clip length in frames (a multiple of 128)"),
    ("valid_samples", pa.int64(), "int64", "frames of real audio; the rest (song shorter than a clip) is zeros"),
    ("duration", pa.float64(), "float64", "samples / sample_rate (s)"),
    ("start_sample", pa.int64(), "int64", "first frame of the clip in the trimmed song"),
    ("start_time", pa.float64(), "float64", "start_sample / sample_rate (s)"),
    ("start_bar", pa.int32(), "int32", "bar (build_lpd bar index) in which the clip starts; -1: before the first bar; null: no bars (ingested audio)"),
    ("end_bar", pa.int32(), "int32", "exclusive: the clip overlaps bars start_bar .. end_bar-1"),
    ("song_duration", pa.float64(), "float64", "duration of the trimmed song (s)"),
    ("peak", pa.float32(), "float32", "max |x| of the stored clip"),
    ("gain", pa.float32(), "float32", "effective gain: synth gain x gain_scale (ingest: gain_scale)"),
    ("gain_scale", pa.float32(), "float32", "scale applied to the whole song so its peak is <= 1 (1.0: none)"),
    ("downmix", pa.string(), "string", "mean | left | right | random | none"),
    ("downmix_weight", pa.float32(), "float32", "m in x = m*L + (1-m)*R; null for none"),
    ("render", pa.string(), "string", "JSON: every render (or decode/resample) setting"),
]
SCHEMA_FIELDS = [pa.field(n, t) for n, t, _, _ in COLUMNS] + [pa.field("audio", AUDIO_TYPE)]
#: FLAC bytes are already compressed: stored as they are; the metadata columns get zstd
COMPRESSION = {**{n: "zstd" for n, *_ in COLUMNS}, "audio.bytes": "none", "audio.path": "zstd"}
COMPRESSION_LEVEL = {n: 1 for n, codec in COMPRESSION.items() if codec == "zstd"}

AUDIO = shard_schema.register(shard_schema.Kind(
    "lakh-pipeline/audio-clips", 1, (1,), "render_audio", ("schema.json", "../schema.json"),
    ("sample_rate", "channels", "clip_samples"), parquet_format="audio_shard",
    parquet_schema=lambda: pa.schema(SCHEMA_FIELDS)))
SCHEMA_VERSION = shard_schema.version(AUDIO)


def hf_features(sample_rate: int) -> dict:
    feats = {n: {"dtype": d, "_type": "Value"} for n, _, d, _ in COLUMNS}
    feats["audio"] = {"sampling_rate": int(sample_rate), "_type": "Audio"}
    return feats


def parquet_schema(sample_rate: int) -> pa.Schema:
    meta = {"huggingface": json.dumps({"info": {"features": hf_features(sample_rate)}}, sort_keys=True),
            **shard_schema.parquet_metadata("audio_shard", sample_rate=int(sample_rate),
                                            audio="FLAC, 16-bit PCM, in audio.bytes; one row = one clip",
                                            channels="1 (mono) or 2 (stereo): the FLAC's own channel count")}
    return pa.schema(SCHEMA_FIELDS, metadata=meta)


def flac_bytes(x: np.ndarray, sample_rate: int) -> bytes:
    """FLAC, 16-bit PCM, of float audio in [-1, 1] ((frames,) or (frames, channels)).

    Quantisation is ours and explicit: ``clip(round(x * 32767), -32768, 32767)``.
    """
    import soundfile as sf

    pcm = np.clip(np.rint(np.asarray(x, np.float32) * np.float32(32767.0)), -32768, 32767).astype(np.int16)
    buf = io.BytesIO()
    sf.write(buf, pcm, sample_rate, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


#: bytes reserved for the streamed ``audio.npy`` header (a multiple of 64, as numpy aligns it)
NPY_HEADER_BYTES = 256


def _npy_header_fixed(dtype: np.dtype, shape: tuple[int, ...], size: int) -> bytes:
    """An .npy 1.0 header of exactly ``size`` bytes (the dict padded with spaces, as numpy pads it)."""
    d = repr({"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": tuple(shape)})
    body = d.encode("latin1")
    pad = size - 10 - len(body) - 1
    if pad < 0:
        raise ValueError(f"shape {shape} does not fit an .npy header of {size} bytes")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", size - 10) + body + b" " * pad + b"\n"


def _gf2_times(mat: list[int], vec: int) -> int:
    out, i = 0, 0
    while vec:
        if vec & 1:
            out ^= mat[i]
        vec >>= 1
        i += 1
    return out


def _gf2_square(mat: list[int]) -> list[int]:
    return [_gf2_times(mat, mat[n]) for n in range(32)]


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """CRC-32 of ``A + B`` from ``crc32(A)``, ``crc32(B)`` and ``len(B)`` (zlib's crc32_combine)."""
    if len2 <= 0:
        return crc1
    odd = [0xEDB88320] + [1 << n for n in range(31)]  # one zero bit
    even = _gf2_square(odd)  # two zero bits
    odd = _gf2_square(even)  # four zero bits
    while True:
        even = _gf2_square(odd)
        if len2 & 1:
            crc1 = _gf2_times(even, crc1)
        len2 >>= 1
        if not len2:
            break
        odd = _gf2_square(even)
        if len2 & 1:
            crc1 = _gf2_times(odd, crc1)
        len2 >>= 1
        if not len2:
            break
    return crc1 ^ crc2


def _zinfo(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    return info


class ShardWriter:
    """Streams clips into ``<stem>-NN.parquet`` / ``<stem>-NN.npz`` parts of bounded size.

    ``add`` takes one clip (float32 array + metadata); memory holds at most one row group of
    FLAC bytes; the NPZ audio is streamed into the part's zip behind a blank .npy header that is
    filled in (with the member's CRC-32) when the part closes.
    Parquet parts go to ``folder``, NPZ parts (same stem) to ``npz_folder`` (default: ``folder``).
    ``close`` returns the Parquet part file names written.
    """

    def __init__(self, folder: Path, stem: str, *, sample_rate: int, row_group_bytes: int, shard_bytes: int,
                 write_npz: bool = True, npz_folder: Path | None = None) -> None:
        self.folder = Path(folder)
        self.npz_folder = Path(npz_folder) if npz_folder is not None else self.folder
        self.stem = stem
        self.sample_rate = sample_rate
        self.row_group_bytes = row_group_bytes
        self.shard_bytes = shard_bytes
        self.write_npz = write_npz
        self.schema = parquet_schema(sample_rate)
        self.parts: list[str] = []
        self._open = False

    # -- parts ------------------------------------------------------------------------------
    def _start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.write_npz:
            self.npz_folder.mkdir(parents=True, exist_ok=True)
        name = f"{self.stem}-{len(self.parts):02d}"
        self._name = name
        fd, self._pq_tmp = tempfile.mkstemp(dir=self.folder, prefix=f".{name}.", suffix=".parquet.tmp")
        os.fchmod(fd, FILE_MODE)  # the umask's mode, not mkstemp's 0600
        os.close(fd)
        self._writer = pq.ParquetWriter(self._pq_tmp, self.schema, compression=COMPRESSION, compression_level=COMPRESSION_LEVEL,
                                        use_dictionary=False, write_statistics=False)
        if self.write_npz:
            fd, self._npz_tmp = tempfile.mkstemp(dir=self.npz_folder, prefix=f".{name}.", suffix=".npz.tmp")
            os.fchmod(fd, FILE_MODE)  # the umask's mode, not mkstemp's 0600
            os.close(fd)
            self._zip = zipfile.ZipFile(self._npz_tmp, "w", zipfile.ZIP_STORED, allowZip64=True)
            self._member = self._zip.open(_zinfo("audio.npy"), "w", force_zip64=True)
            self._data_start = self._zip.fp.tell()
            self._member.write(b" " * NPY_HEADER_BYTES)  # the real header is written when the count is known
            self._crc = 0
            self._nbytes = 0
        self._rows: list[dict] = []
        self._group_bytes = 0
        self._part_bytes = 0
        self._meta: list[dict] = []
        self._shape: tuple[int, ...] | None = None
        self._open = True

    def add(self, audio: np.ndarray, meta: dict) -> None:
        """``audio``: (samples,) or (samples, 2) float32; ``meta``: the COLUMNS values."""
        if not self._open:
            self._start()
        audio = np.ascontiguousarray(audio, np.float32)
        shape = audio.shape[1:]
        if self._shape is None:
            self._shape = (audio.shape[0],) + shape
        elif (audio.shape[0],) + shape != self._shape:
            raise ValueError(f"clip shape {audio.shape} differs from the shard's {self._shape}")
        blob = flac_bytes(audio, self.sample_rate)
        row = {n: meta.get(n) for n, *_ in COLUMNS}
        row["audio"] = {"bytes": blob, "path": f"{meta['id']}-{meta['clip']:04d}.flac"}
        self._rows.append(row)
        self._meta.append(row)
        self._group_bytes += len(blob)
        self._part_bytes += len(blob)
        if self.write_npz:
            data = (audio.T if audio.ndim == 2 else audio).tobytes()  # channels first
            self._member.write(data)
            self._crc = zlib.crc32(data, self._crc)
            self._nbytes += len(data)
        if self._group_bytes >= self.row_group_bytes:
            self._flush_group()
        if self._part_bytes >= self.shard_bytes:
            self._finish_part()

    def _flush_group(self) -> None:
        if self._rows:
            cols = [pa.array([r[f.name] for r in self._rows], f.type) for f in SCHEMA_FIELDS[:-1]]
            audio = pa.StructArray.from_arrays(
                [pa.array([r["audio"]["bytes"] for r in self._rows], pa.binary()),
                 pa.array([r["audio"]["path"] for r in self._rows], pa.string())], fields=list(AUDIO_TYPE))
            table = pa.Table.from_arrays(cols + [audio], schema=self.schema)
            self._writer.write_table(table, row_group_size=len(self._rows))
        self._rows = []
        self._group_bytes = 0

    def _finish_part(self) -> None:
        self._flush_group()
        self._writer.close()
        os.replace(self._pq_tmp, self.folder / f"{self._name}.parquet")
        self.parts.append(f"{self._name}.parquet")
        if self.write_npz:
            try:
                self._pack_npz()
            except BaseException:
                self._zip.close()
                os.unlink(self._npz_tmp)
                raise
        self._open = False

    def _pack_npz(self) -> None:
        n = len(self._meta)
        samples = self._shape[0]
        shape = (n, samples) if len(self._shape) == 1 else (n, self._shape[1], samples)
        arrays = {
            "ids": np.array([m["id"] for m in self._meta], dtype="<U32"),
            "clip": np.array([m["clip"] for m in self._meta], np.int32),
            "start_sample": np.array([m["start_sample"] for m in self._meta], np.int64),
            "valid_samples": np.array([m["valid_samples"] for m in self._meta], np.int64),
            "start_bar": np.array([-2 if m["start_bar"] is None else m["start_bar"] for m in self._meta], np.int32),
            "end_bar": np.array([-2 if m["end_bar"] is None else m["end_bar"] for m in self._meta], np.int32),
            "sample_rate": np.array(self.sample_rate, np.int64),
        }
        # the audio member was streamed behind a blank header: write the real one (same length)
        # and patch the member's CRC-32 (local header + central directory) to match
        zf, member = self._zip, self._member
        member.close()
        info = zf.filelist[-1]
        header = _npy_header_fixed(np.dtype("<f4"), shape, NPY_HEADER_BYTES)
        info.CRC = crc32_combine(zlib.crc32(header), self._crc, self._nbytes)
        zf.fp.seek(self._data_start)
        zf.fp.write(header)
        zf.fp.seek(info.header_offset + 14)
        zf.fp.write(struct.pack("<I", info.CRC))
        zf.fp.seek(zf.start_dir)
        for name, arr in arrays.items():
            with zf.open(_zinfo(f"{name}.npy"), "w") as m:
                m.write(npy_header(arr.dtype, arr.shape))
                m.write(np.ascontiguousarray(arr).tobytes())
        zf.close()
        os.replace(self._npz_tmp, self.npz_folder / f"{self._name}.npz")

    def close(self) -> list[str]:
        if self._open:
            self._finish_part()
        return list(self.parts)

    def abort(self) -> None:
        if self._open:
            self._writer.close()
            if self.write_npz:
                with contextlib.suppress(OSError, ValueError):  # best effort: the part is deleted next
                    self._member.close()
                    self._zip.close()
            for p in (self._pq_tmp, getattr(self, "_npz_tmp", None) if self.write_npz else None):
                if p and os.path.exists(p):
                    os.unlink(p)
            self._open = False


def filter_shard(folder: Path, part: str, drop_sources: set[str], *, row_group_bytes: int,
                 npz_folder: Path | None = None) -> None:
    """Rewrite one part without the clips of ``drop_sources`` (duplicates found across tasks)."""
    folder = Path(folder)
    pq_path = folder / part
    table = pq.read_table(pq_path)
    keep = np.array([s not in drop_sources for s in table.column("source").to_pylist()], bool)
    if keep.all():
        return
    kept = table.filter(pa.array(keep))
    schema = table.schema
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{part}.", suffix=".tmp")
    os.fchmod(fd, FILE_MODE)  # the umask's mode, not mkstemp's 0600
    os.close(fd)
    with pq.ParquetWriter(tmp, schema, compression=COMPRESSION, compression_level=COMPRESSION_LEVEL, use_dictionary=False,
                          write_statistics=False) as w:
        rows, size = [], 0
        for i in range(kept.num_rows):
            rows.append(i)
            size += len(kept.column("audio")[i]["bytes"].as_py())
            if size >= row_group_bytes:
                w.write_table(kept.take(rows), row_group_size=len(rows))
                rows, size = [], 0
        if rows:
            w.write_table(kept.take(rows), row_group_size=len(rows))
    os.replace(tmp, pq_path)
    npz_path = Path(npz_folder if npz_folder is not None else folder) / Path(part).with_suffix(".npz").name
    if npz_path.exists():
        from pipeline.formats.npz import load_npz

        arrays = load_npz(npz_path)
        for k, v in arrays.items():
            if v.ndim >= 1 and len(v) == len(keep):
                arrays[k] = v[keep]
        write_npz_stored(npz_path, arrays)


def write_npz_stored(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """A deterministic uncompressed NPZ, written atomically (audio first, as ShardWriter does)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, FILE_MODE)  # the umask's mode, not mkstemp's 0600
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, arr in arrays.items():
                arr = np.ascontiguousarray(arr)
                with zf.open(_zinfo(f"{name}.npy"), "w", force_zip64=name == "audio") as member:
                    member.write(npy_header(arr.dtype, arr.shape))
                    member.write(arr.tobytes())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def schema_document(*, sample_rate: int, downmix: str, clip_samples: int, producer: str, settings: dict) -> dict:
    """``schema.json``: fields, types, meanings, the NPZ layout and the settings of the build."""
    channels = 2 if downmix == "none" else 1
    item = ["samples"] if channels == 1 else [2, "samples"]
    uniform = shard_schema.uniform(
        AUDIO,
        fields={**{n: m for n, _, _, m in COLUMNS},
                "audio": "struct<bytes, path>: a whole FLAC file (16-bit PCM) and its name <id>-<clip>.flac"},
        dtypes={"parquet": shard_schema.arrow_dtypes(pa.schema(SCHEMA_FIELDS)),
                "npz": {"audio": "float32", "ids": "<U32", "clip": "int32", "start_sample": "int64",
                        "valid_samples": "int64", "start_bar": "int32", "end_bar": "int32", "sample_rate": "int64"}},
        shapes={"item": item, "npz": {"audio": ["clips", *item], "ids": ["clips"], "clip": ["clips"],
                                      "start_sample": ["clips"], "valid_samples": ["clips"], "start_bar": ["clips"],
                                      "end_bar": ["clips"], "sample_rate": []}},
        track_order=None, resolution=sample_rate, resolution_unit="samples per second", vocabulary=None)
    return {
        **uniform,
        "channel_order": ["mono"] if channels == 1 else ["left", "right"],
        "files": {"parquet": "parquet/*.parquet (audio-<task>-<part>)",
                  "npz": "npz/*.npz (same names; when write_npz)"},
        "producer": producer,
        "sample_rate": sample_rate,
        "channels": channels,
        "downmix": downmix,
        "clip_samples": clip_samples,
        "parquet": {
            "columns": [{"name": n, "type": str(t), "meaning": m} for n, t, _, m in COLUMNS]
            + [{"name": "audio", "type": str(AUDIO_TYPE),
                "meaning": "Hugging Face Audio: a whole FLAC file (16-bit PCM) in bytes, path = <id>-<clip>.flac"}],
            "huggingface_features": hf_features(sample_rate),
            "row_groups": "closed when their FLAC bytes reach row_group_mb; a shard part rolls over at shard_mb",
        },
        "npz": {
            "audio": "float32 (clips, samples) mono or (clips, 2, samples) stereo, channels first; not quantised",
            "ids": "<U32 (clips,)", "clip": "int32", "start_sample": "int64", "valid_samples": "int64",
            "start_bar": "int32 (-1: before the first bar, -2: no bars)", "end_bar": "int32 (-2: no bars)",
            "sample_rate": "int64 scalar",
            "order": "the same clips in the same order as the Parquet part of the same name",
        },
        "settings": settings,
    }
