"""The input MIDI files of a build: a folder in any Lakh layout, any folder of MIDI files,
or a tar archive read as a stream.

A source is listed once (``items()``) and then read (``iter_payloads``). Keys are the
"source paths" users see in manifests: the path relative to the source folder with ``/``
separators, or the archive member name (leading ``./`` removed).

Lakh layouts need no special case: ``lmd_full/<h>/<md5>.mid`` and
``clean_midi/<artist>/<title>.mid`` are plain trees, and in ``lmd_matched`` /
``lmd_aligned`` (``<A>/<B>/<C>/<MSD id>/<md5>.mid``) the MSD id is read from the parent
folder of each file.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import re
import stat
import tarfile
import zlib
from abc import ABC, abstractmethod
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from pipeline.errors import ParamsError, SourceError

MIDI_SUFFIXES = (".mid", ".midi", ".rmi")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
DEFAULT_MAX_TOTAL_BYTES = 64 * 2**30
DEFAULT_MAX_RATIO = 200  # real MIDI .tar.gz: ~4x (../shared/midi); gzip's ceiling: ~1032x
RATIO_FLOOR_BYTES = 16 * 2**20  # the ratio limit never goes below this: tiny archives are harmless

UNSAFE_NAME = "unsafe archive member name"
NOT_REGULAR = "not a regular file"
TOO_LARGE_MEMBER = "too large for the archive"

# Stable manifest codes for the reasons an archive member is not read (see reason_code); the
# first prefix that matches wins.
REASON_CODES = {UNSAFE_NAME: "archive.unsafe_path", NOT_REGULAR: "archive.not_regular",
                TOO_LARGE_MEMBER: "archive.too_large", "too large": "input.too_large"}

_MSD_ID = re.compile(r"TR[A-Z0-9]{16}")

Payload = tuple["SourceItem", "bytes | None", "str | None"]


@dataclass(frozen=True)
class SourceItem:
    """One MIDI candidate of a source.

    Attributes
    ----------
    key : str
        Path relative to the source with ``/`` separators, or the archive member name.
        Unique within a source.
    msd_id : str or None
        Million Song Dataset track id (``TR`` + 16 characters) when the file's parent
        folder is one, as in ``lmd_matched`` and ``lmd_aligned``.
    size : int
        Size in bytes (from ``stat`` or the tar header).
    """

    key: str
    msd_id: str | None
    size: int


def is_midi_name(name: str) -> bool:
    """Whether ``name`` ends in .mid, .midi or .rmi, in any case."""
    return name.lower().endswith(MIDI_SUFFIXES)


def msd_id_of(key: str) -> str | None:
    """The MSD id in ``key`` when the file's parent folder is one, else None."""
    parts = key.split("/")
    if len(parts) >= 2 and _MSD_ID.fullmatch(parts[-2]):
        return parts[-2]
    return None


def reason_code(reason: str) -> str:
    """The stable manifest code of a ``reason`` from ``iter_payloads`` or ``read_input_file``.

    ``archive.unsafe_path`` (absolute or ``..`` member name), ``archive.not_regular`` (link,
    device, fifo), ``archive.too_large`` (a member over the archive's decompression budget),
    ``input.too_large``; anything else (cannot read...) is ``input.unreadable``.
    """
    for prefix, code in REASON_CODES.items():
        if reason.startswith(prefix):
            return code
    return "input.unreadable"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or exc.__class__.__name__


def _too_large(size: int, max_bytes: int) -> str:
    return f"too large: {size} bytes > max_bytes={max_bytes}"


def _check_max_bytes(max_bytes: int) -> None:
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise ParamsError(f"max_bytes={max_bytes!r} must be a positive integer")


class Source(ABC):
    """A listed set of MIDI candidates; see :func:`open_source`."""

    kind: str

    def __init__(self, path: Path, items: list[SourceItem]) -> None:
        self.path = path
        self._items = items
        self._keys = {item.key for item in items}

    def items(self) -> list[SourceItem]:
        """Every MIDI candidate: sorted by key for folders, in archive order for archives."""
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def path_of(self, item: SourceItem) -> Path | None:
        """The file to read for ``item``, so workers can read it themselves; None for archives."""
        return None

    def _wanted(self, keys: set[str] | None) -> set[str] | None:
        if keys is None:
            return None
        unknown = set(keys) - self._keys
        if unknown:
            raise ValueError(f"{self.path}: keys not in this source: {sorted(unknown)[:3]}")
        return set(keys)

    @abstractmethod
    def iter_payloads(self, keys: set[str] | None = None, *, max_bytes: int) -> Iterator[Payload]:
        """Yield ``(item, data, reason)`` for each wanted item, in ``items()`` order.

        Parameters
        ----------
        keys : set of str, optional
            Keys to read (all when None); each must be a key of ``items()``.
        max_bytes : int
            Items larger than this are yielded with ``data=None`` and the reason
            ``"too large: N bytes > max_bytes=M"``, without being read.

        Yields
        ------
        item : SourceItem
        data : bytes or None
            The file's bytes, or None when it could not or should not be read.
        reason : str or None
            Why ``data`` is None (one line), else None.
        """


class FolderSource(Source):
    """A folder searched recursively for MIDI files.

    Symlinked files are followed when their target is a regular file inside the source
    root; other symlinks (outside the root, dangling, to folders) are skipped. Folder
    symlinks are never descended into, so a walk cannot loop or leave the root.
    """

    kind = "folder"

    def path_of(self, item: SourceItem) -> Path | None:
        return self.path / item.key

    def iter_payloads(self, keys: set[str] | None = None, *, max_bytes: int) -> Iterator[Payload]:
        _check_max_bytes(max_bytes)
        wanted = self._wanted(keys)
        for item in self._items:
            if wanted is not None and item.key not in wanted:
                continue
            if item.size > max_bytes:
                yield item, None, _too_large(item.size, max_bytes)
                continue
            try:
                with open(self.path / item.key, "rb") as f:
                    data = f.read(max_bytes + 1)  # the file may have grown since it was listed
            except OSError as exc:
                yield item, None, f"cannot read: {exc.strerror or _one_line(exc)}"
                continue
            if len(data) > max_bytes:
                yield item, None, _too_large(os.path.getsize(self.path / item.key), max_bytes)
                continue
            yield item, data, None


def _list_folder(root: Path) -> list[SourceItem]:
    real_root = os.path.realpath(root)

    def on_error(exc: OSError) -> None:
        raise SourceError(f"{root}: cannot list {exc.filename}: {exc.strerror or _one_line(exc)}")

    items = []
    for dirpath, _dirnames, filenames in os.walk(root, onerror=on_error):
        for name in filenames:
            if not is_midi_name(name):
                continue
            full = os.path.join(dirpath, name)
            if os.path.islink(full):
                target = os.path.realpath(full)
                if os.path.commonpath([real_root, target]) != real_root:
                    continue  # never leave the source root
            try:
                st = os.stat(full)
            except OSError:
                continue  # dangling symlink, or gone since listed
            if not stat.S_ISREG(st.st_mode):
                continue  # fifo, socket, device: reading could block
            key = os.path.relpath(full, root).replace(os.sep, "/")
            items.append(SourceItem(key=key, msd_id=msd_id_of(key), size=st.st_size))
    items.sort(key=lambda item: item.key)
    return items


def _member_key(name: str) -> str | None:
    """The key of an archive member, or None when its name is unsafe."""
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return None
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        return None
    return "/".join(p for p in parts if p not in ("", "."))


def _member_kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return "symlink"
    if member.islnk():
        return "hard link"
    if member.isdev():
        return "device or fifo"
    return "special member"


class ArchiveSource(Source):
    """A ``.tar``, ``.tar.gz`` or ``.tgz`` archive read as a stream, never unpacked to disk.

    Listing costs one streaming pass over the archive (member data is decompressed and
    skipped, not stored); each ``iter_payloads`` call is one more pass. Both passes stop
    with SourceError once the decompressed stream would exceed the archive's budget:
    ``max_total_bytes``, or ``max_ratio`` times the archive's size on disk (a decompression
    bomb), whichever is smaller. The budget counts every decompressed byte, tar headers
    included (a pax or GNU long-name header of gigabytes is a bomb too), and a member whose
    header announces more than the budget is refused before its data is decompressed.

    Members with MIDI names are items. Those that cannot be read safely are yielded by
    ``iter_payloads`` with a reason: absolute or ``..`` names (``"unsafe archive member
    name"``; their key is the raw member name) and links, devices and fifos. Members
    without MIDI names, and folders, are skipped silently.
    """

    kind = "archive"

    def __init__(self, path: Path, items: list[SourceItem], *, max_total_bytes: int,
                 max_ratio: int = DEFAULT_MAX_RATIO) -> None:
        super().__init__(path, items)
        self.max_total_bytes = max_total_bytes
        self.max_ratio = max_ratio

    def iter_payloads(self, keys: set[str] | None = None, *, max_bytes: int) -> Iterator[Payload]:
        _check_max_bytes(max_bytes)
        wanted = self._wanted(keys)
        remaining = [item.key for item in self._items if wanted is None or item.key in wanted]
        if not remaining:
            return
        pos = 0
        for item, reason, tar, member in _scan_archive(self.path, self.max_total_bytes, self.max_ratio):
            if item.key != remaining[pos]:
                continue
            if reason is not None:
                yield item, None, reason
            elif item.size > max_bytes:
                yield item, None, _too_large(item.size, max_bytes)
            else:
                try:
                    data = tar.extractfile(member).read()
                except _READ_ERRORS as exc:
                    raise SourceError(f"{self.path}: not a readable tar archive "
                                      f"({_one_line(exc)})") from None
                yield item, data, None
            pos += 1
            if pos == len(remaining):
                return  # nothing more wanted: stop decompressing
        raise SourceError(f"{self.path}: archive changed since it was listed ({remaining[pos]} not found)")


_READ_ERRORS = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError)


class _Budget:
    """How many decompressed bytes an archive may yield, and how to say it was exceeded."""

    def __init__(self, path: Path, max_total_bytes: int, max_ratio: int) -> None:
        self.path = path
        compressed = os.path.getsize(path)
        by_ratio = max(max_ratio * compressed, RATIO_FLOOR_BYTES)
        if by_ratio < max_total_bytes:
            self.limit = by_ratio
            self.what = (f"{by_ratio} bytes once decompressed (max_ratio={max_ratio} times its "
                         f"{compressed} bytes: a decompression bomb?)")
        else:
            self.limit = max_total_bytes
            self.what = f"max_total_bytes={max_total_bytes} bytes once decompressed"

        self.hard_limit = max_total_bytes  # skipping a member never takes the stream past this

    def error(self, where: str) -> SourceError:
        return SourceError(f"{self.path}: more than {self.what} ({where})")

    def skip(self, member_size: int) -> None:
        """A refused member is decompressed past, not read: its bytes do not count against the
        members after it (up to ``hard_limit`` in all)."""
        self.limit = min(self.limit + member_size, self.hard_limit)


class _BudgetedReader:
    """A decompressed stream that raises SourceError rather than yield more than the budget.

    tarfile reads pax and GNU long-name headers whole, before the member they describe is
    seen: this is the only place where such a header can be stopped.
    """

    CHUNK = 1 << 20  # decompress in large steps: tarfile asks for 10 KiB at a time

    def __init__(self, stream, budget: _Budget) -> None:
        self._stream = stream
        self._budget = budget
        self._buf = b""
        self._pos = 0
        self.count = 0  # decompressed bytes taken from the stream so far

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self._budget.limit + 1
        if self._pos >= len(self._buf):
            # Never take more than one byte past the budget: a huge read is the attack.
            want = min(max(size, self.CHUNK), self._budget.limit + 1 - self.count)
            self._buf, self._pos = self._stream.read(want), 0
            self.count += len(self._buf)
            if self.count > self._budget.limit:
                raise self._budget.error(f"at decompressed byte {self.count}")
        data = self._buf[self._pos:self._pos + size]
        self._pos += len(data)
        return data


def _decompressed(path: Path, stack: ExitStack):
    """The archive's decompressed stream (gzip, bzip2, xz, or none), by its magic bytes."""
    raw = stack.enter_context(open(path, "rb"))
    magic = raw.read(6)
    raw.seek(0)
    if magic.startswith(b"\x1f\x8b"):
        return stack.enter_context(gzip.GzipFile(fileobj=raw, mode="rb"))
    if magic.startswith(b"BZh"):
        return stack.enter_context(bz2.BZ2File(raw))
    if magic.startswith(b"\xfd7zXZ\x00"):
        return stack.enter_context(lzma.LZMAFile(raw))
    return raw


def _scan_archive(path: Path, max_total_bytes: int, max_ratio: int = DEFAULT_MAX_RATIO):
    """Yield ``(item, reason, tar, member)`` for each MIDI-named member, in archive order.

    The member's data can be read with ``tar.extractfile(member)`` until the next step.
    """
    seen: set[str] = set()
    try:
        with ExitStack() as stack:
            budget = _Budget(path, max_total_bytes, max_ratio)
            reader = _BudgetedReader(_decompressed(path, stack), budget)
            tar = stack.enter_context(tarfile.open(fileobj=reader, mode="r|"))
            for member in tar:
                # offset_data is the member's position in the decompressed stream.
                over = member.offset_data + member.size > budget.limit
                if over:
                    if member.offset_data + member.size > budget.hard_limit:
                        raise budget.error(f"at member {member.name!r}")
                    # one member over the budget (a bomb, or just huge): refused alone; the
                    # stream is decompressed past it in bounded chunks, the next members are read
                    budget.skip(member.size)
                if member.isdir() or not is_midi_name(member.name):
                    continue
                key = _member_key(member.name)
                reason = None
                if over:
                    reason = (f"{TOO_LARGE_MEMBER}: a member of {member.size} bytes, more than "
                              f"{budget.what}; skipped")
                if key is None:
                    key, reason = member.name, UNSAFE_NAME
                elif not member.isreg():
                    reason = f"{NOT_REGULAR} ({_member_kind(member)})"
                if key in seen:
                    raise SourceError(f"{path}: duplicate archive member {key!r}")
                seen.add(key)
                msd_id = None if reason == UNSAFE_NAME else msd_id_of(key)
                size = member.size if member.isreg() else 0
                yield SourceItem(key=key, msd_id=msd_id, size=size), reason, tar, member
    except SourceError:
        raise
    except _READ_ERRORS as exc:
        raise SourceError(f"{path}: not a readable tar archive ({_one_line(exc)})") from None


def _is_archive_name(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def open_source(source: Path, *, max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
                max_ratio: int = DEFAULT_MAX_RATIO) -> Source:
    """Open and list the MIDI files of a folder or a tar archive.

    Parameters
    ----------
    source : Path
        A folder (searched recursively for .mid/.midi/.rmi files, any case), or a
        ``.tar``, ``.tar.gz`` or ``.tgz`` archive of them.
    max_total_bytes : int, optional
        Archives only: stop with SourceError once more than this many bytes have been
        decompressed (a guard against decompression bombs). Default 64 GiB.
    max_ratio : int, optional
        Archives only: the decompression budget is this many times the archive's size on disk
        (but never below 16 MiB). Default 200. A member over the budget is listed with the
        reason ``too large for the archive...`` (code ``archive.too_large``) and skipped; a tar
        header over it stops the archive with SourceError.

    Returns
    -------
    Source
        A :class:`FolderSource` or an :class:`ArchiveSource`, already listed.

    Raises
    ------
    SourceError
        When ``source`` is missing, is neither a folder nor a readable archive, holds no
        MIDI files, or decompresses past its budget. The message is one line and names
        ``source``.
    """
    source = Path(source)
    for name, value in (("max_total_bytes", max_total_bytes), ("max_ratio", max_ratio)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ParamsError(f"{name}={value!r} must be a positive integer")
    if not source.exists():
        raise SourceError(f"{source}: no such file or folder")
    if source.is_dir():
        result: Source = FolderSource(source, _list_folder(source))
    elif source.is_file() and _is_archive_name(source):
        items = [item for item, _reason, _tar, _member in _scan_archive(source, max_total_bytes, max_ratio)]
        result = ArchiveSource(source, items, max_total_bytes=max_total_bytes, max_ratio=max_ratio)
    else:
        raise SourceError(f"{source}: not a folder or a supported archive "
                          f"(accepted: a folder, {', '.join(ARCHIVE_SUFFIXES)})")
    if not len(result):
        raise SourceError(f"{source}: no .mid/.midi/.rmi files found")
    return result
