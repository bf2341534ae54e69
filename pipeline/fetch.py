"""Download the Lakh MIDI Dataset archives: resumable, checksummed, put in place atomically.

``fetch_lmd(variant, out)`` downloads one LMD variant (``full``, ``matched``, ``aligned``,
``clean``) into ``out``, plus LMD's ``match_scores.json`` for the variants that have MSD
matches (build-lpd reads it to mark LPD's matched and cleansed subsets). Each file is
written to ``<name>.part``; a rerun resumes it with an HTTP Range request (a server that
ignores Range sends the whole file again and the part is restarted). The checksum is
computed while the bytes arrive, and the part is renamed to ``<name>`` only when it
matches; a mismatch deletes the part. A file already in place is checked again and left
alone. The archives are not unpacked: build-lpd reads the ``.tar.gz`` as a stream.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pipeline.errors import FetchError, ParamsError
from pipeline.stagekit import OutputLock

LMD_URL_BASE = "http://hog.ee.columbia.edu/craffel/lmd/"  # the links of https://colinraffel.com/projects/lmd/
URL_BASE_ENV = "PIPELINE_LMD_URL"
CHUNK = 1 << 20
TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Remote:
    """What is known of one file on the LMD server: size in bytes and checksums (None: unknown)."""

    size: int | None
    md5: str | None
    sha256: str | None


# The LMD page publishes no checksums. The sums below are those recorded by projects that
# downloaded the files; where two projects list the same file, their SHA-256 values agree.
#   muspy        = salu133445/muspy, muspy/datasets/lmd.py (size, md5 and sha256)
#   resolv-data  = resolv-libs/resolv-data, src/resolv_data/datasets/mir/lakh_midi.py (sha256)
# No MD5 was found anywhere for clean_midi.tar.gz and match_scores.json: they are checked
# against the SHA-256 alone. Their sizes are only a progress-bar fallback (the server's
# Content-Length comes first), from a public data inventory that lists the same SHA-256.
FILES: dict[str, Remote] = {
    # muspy (md5, sha256, size); sha256 also resolv-data
    "lmd_full.tar.gz": Remote(size=1_768_163_879, md5="2536ce3fd2cede53ddaa264f731859ab",
                              sha256="6fcfe2ac49ca08f3f214cec86ab138d4fc4dabcd7f27f491a838dae6db45a12b"),
    # muspy (md5, sha256, size); sha256 also resolv-data
    "lmd_matched.tar.gz": Remote(size=1_407_072_670, md5="fb80d01c22020295bb3eeef31f1aa63a",
                                 sha256="621ff830aed771f469e5bfa13dc12a33c6ed69090adeda63d0b5c47783af0191"),
    # muspy (md5, sha256, size); sha256 also resolv-data
    "lmd_aligned.tar.gz": Remote(size=272_169_548, md5="d36ca9159966d81d97e1e37d10ed4584",
                                 sha256="2bf5400e82eba73204644946515489b68811e1e656b0cfd854efc14377f6e53b"),
    # no published MD5 found; sha256: resolv-data
    "clean_midi.tar.gz": Remote(size=234_283_029, md5=None,
                                sha256="de1bb64cbc0cf35545a05b5c3e786aa6890cfa144edffc4b827ff41bf8c33dc5"),
    # no published MD5 found; sha256: resolv-data
    "match_scores.json": Remote(size=7_237_036, md5=None,
                                sha256="267bc606dfa21f0ad0601a4a080972cd4ae8088fe4003b9bb2811b5be060a102"),
}

#: the files of each LMD variant (the keys: pipeline.names.LMD_VARIANTS, in order)
ARCHIVES: dict[str, tuple[str, ...]] = {
    "full": ("lmd_full.tar.gz", "match_scores.json"),
    "matched": ("lmd_matched.tar.gz", "match_scores.json"),
    "aligned": ("lmd_aligned.tar.gz", "match_scores.json"),
    "clean": ("clean_midi.tar.gz",),
}


@dataclass(frozen=True)
class Fetched:
    """The outcome for one file.

    Attributes
    ----------
    path : Path
        The verified file.
    status : str
        ``downloaded``; ``resumed`` (a part was continued with Range); ``restarted`` (a part
        was there but the server ignored Range, so the whole file came again); ``present``.
    received : int
        Bytes received over the network by this call.
    md5 : str
        The file's MD5.
    checked : tuple of str
        The algorithms whose published sum matched (empty: no published sum to check).
    """

    path: Path
    status: str
    received: int
    md5: str
    checked: tuple[str, ...]

    def describe(self) -> str:
        sums = (" and ".join(self.checked) + " verified") if self.checked else \
            f"md5 {self.md5} (no published sum to check it against)"
        what = "already present" if self.status == "present" else f"{self.status} ({self.received} bytes)"
        return f"{self.path.name}: {what}, {sums} -> {self.path}"


def url_base_of(url_base: str | None) -> str:
    """``url_base`` (or ``$PIPELINE_LMD_URL``, or LMD's own server), checked, ending in ``/``."""
    base = url_base or os.environ.get(URL_BASE_ENV) or LMD_URL_BASE
    if not re.match(r"^https?://[^/\s]+", base):
        raise ParamsError(f"--url-base={base!r} must be an http:// or https:// URL")
    return base if base.endswith("/") else base + "/"


def fetch_lmd(variant: str, out: Path, *, url_base: str | None = None, retries: int = 3,
              retry_wait_s: float = 2.0, progress: bool | None = None,
              log: Callable[[str], None] | None = None) -> list[Fetched]:
    """Download one LMD variant into ``out`` (see the module docstring); return one result per file.

    Raises
    ------
    ParamsError
        Unknown ``variant``, a ``url_base`` that is not an HTTP URL, negative ``retries``.
    FetchError
        HTTP error, connection lost after ``retries`` resumptions, checksum mismatch.
        One line naming the URL or file; a part that can be resumed is kept.
    """
    if variant not in ARCHIVES:
        raise ParamsError(f"--variant={variant!r} must be one of {', '.join(ARCHIVES)}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ParamsError(f"--retries={retries!r} must be a non-negative integer")
    base = url_base_of(url_base)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FetchError(f"{out}: cannot create the output folder ({exc.strerror or exc})") from None
    results = []
    with OutputLock(out):
        for name in ARCHIVES[variant]:
            result = fetch_file(base + name, out / name, FILES[name], retries=retries,
                                retry_wait_s=retry_wait_s, progress=progress, log=log)
            if log is not None:
                log(result.describe())
            results.append(result)
    return results


def next_command(variant: str, out: Path) -> str:
    """The build-lpd command that reads what ``fetch_lmd(variant, out)`` downloaded."""
    archive, *rest = ARCHIVES[variant]
    cmd = f"pipeline build-lpd {Path(out) / archive}"
    if "match_scores.json" in rest:
        cmd += f" --match-scores {Path(out) / 'match_scores.json'}"
    return cmd


class _Hashes:
    def __init__(self, remote: Remote) -> None:
        self.algorithms = ("md5",) + (("sha256",) if remote.sha256 else ())
        self.reset()

    def reset(self) -> None:
        self.h = {a: hashlib.new(a) for a in self.algorithms}

    def update(self, data: bytes) -> None:
        for h in self.h.values():
            h.update(data)

    def hexdigest(self, algorithm: str) -> str:
        return self.h[algorithm].hexdigest()


def _hash_file(path: Path, hashes: _Hashes) -> int:
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            hashes.update(chunk)
            size += len(chunk)
    return size


def _verify(hashes: _Hashes, remote: Remote) -> tuple[tuple[str, ...], str | None]:
    """The algorithms that matched, and the first mismatch as ``"md5: expected X, got Y"``."""
    checked = []
    for algorithm in ("md5", "sha256"):
        expected = getattr(remote, algorithm)
        if expected is None:
            continue
        got = hashes.hexdigest(algorithm)
        if got != expected.lower():
            return tuple(checked), f"{algorithm} mismatch: expected {expected}, got {got}"
        checked.append(algorithm)
    return tuple(checked), None


class _Interrupted(Exception):
    """The transfer stopped early; the part holds what arrived."""


def fetch_file(url: str, dest: Path, remote: Remote, *, retries: int = 3, retry_wait_s: float = 2.0,
               progress: bool | None = None, log: Callable[[str], None] | None = None) -> Fetched:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming it, verifying it against ``remote``."""
    dest = Path(dest)
    hashes = _Hashes(remote)
    if dest.exists():
        _hash_file(dest, hashes)
        checked, mismatch = _verify(hashes, remote)
        if mismatch:
            raise FetchError(f"{dest}: already exists but its {mismatch} (delete it to download it again)")
        return Fetched(dest, "present", 0, hashes.hexdigest("md5"), checked)

    part = dest.with_name(dest.name + ".part")
    received, how = 0, set()
    for attempt in range(retries + 1):
        try:
            received += _transfer(url, part, remote, hashes, how, progress=progress)
            break
        except _Interrupted as exc:
            if attempt == retries:
                kept = f"{part} is kept: run the command again to resume" if part.exists() else \
                    "run the command again to retry"
                raise FetchError(f"{url}: {exc}; {kept}") from None
            if log is not None:
                log(f"{dest.name}: {exc}; resuming ({attempt + 1}/{retries})")
            time.sleep(retry_wait_s * (attempt + 1))
    checked, mismatch = _verify(hashes, remote)
    if mismatch:
        part.unlink(missing_ok=True)
        raise FetchError(f"{url}: {mismatch}; the download was deleted, run the command again to fetch it afresh")
    os.replace(part, dest)
    status = "resumed" if "resumed" in how else "restarted" if "restarted" in how else "downloaded"
    return Fetched(dest, status, received, hashes.hexdigest("md5"), checked)


_TRANSIENT = (TimeoutError, ConnectionError, http.client.HTTPException)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def _open(url: str, offset: int):
    headers = {"User-Agent": "lakh-pipeline (pipeline fetch-lmd)", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)


def _transfer(url: str, part: Path, remote: Remote, hashes: _Hashes, how: set, *, progress: bool | None) -> int:
    """Append what is missing to ``part`` (hashing all of it); return the bytes received.

    Adds ``resumed`` to ``how`` when a part was continued, ``restarted`` when one was
    dropped. Raises _Interrupted when the transfer can be resumed, FetchError when it cannot.
    """
    from pipeline.progress import progress_bar

    hashes.reset()
    offset = _hash_file(part, hashes) if part.exists() else 0
    if remote.size is not None and offset > remote.size:
        part.unlink()  # longer than the file can be: not a prefix of it
        hashes.reset()
        offset = 0
        how.add("restarted")
    try:
        resp = _open(url, offset)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing after offset: the part may be complete
            m = re.fullmatch(r"bytes \*/(\d+)", exc.headers.get("Content-Range", "") or "")
            if m and int(m.group(1)) == offset:
                how.add("resumed")
                return 0
            part.unlink()
            how.add("restarted")
            raise _Interrupted(f"the server refused to resume at byte {offset} (HTTP 416)") from None
        if exc.code >= 500:
            raise _Interrupted(f"HTTP {exc.code} {exc.reason}") from None
        raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, _TRANSIENT) and not isinstance(reason, ConnectionRefusedError):
            raise _Interrupted(f"connection failed ({_one_line(reason)})") from None
        raise FetchError(f"{url}: cannot connect ({getattr(reason, 'strerror', None) or reason})") from None
    except _TRANSIENT as exc:  # raised while reading the status line
        raise _Interrupted(f"connection failed ({_one_line(exc)})") from None

    with resp:
        total = None
        if offset and resp.status == 206:
            m = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != offset:
                part.unlink()  # a range we did not ask for: start again
                how.add("restarted")
                raise _Interrupted(f"the server answered Range bytes={offset}- with "
                                   f"{resp.headers.get('Content-Range')!r}")
            total = int(m.group(3)) if m.group(3) != "*" else None
            mode = "ab"
            how.add("resumed")
        else:  # 200: the whole file (a server that ignores Range sends it again)
            if offset:
                hashes.reset()
                offset = 0
                how.add("restarted")
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            mode = "wb"
        size = offset
        expected = total if total is not None else remote.size
        try:
            with open(part, mode) as fh, progress_bar(f"{part.name[:-5]} (MiB)",
                                                      expected / 2**20 if expected else None,
                                                      enabled=progress) as bar:
                bar.advance(offset / 2**20)
                while True:
                    try:
                        chunk = resp.read(CHUNK)
                    except (OSError, http.client.HTTPException) as exc:  # reset, timeout, IncompleteRead
                        raise _Interrupted(f"connection lost after {size} bytes ({_one_line(exc)})") from None
                    if not chunk:
                        break
                    fh.write(chunk)
                    hashes.update(chunk)
                    size += len(chunk)
                    bar.advance(len(chunk) / 2**20)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise FetchError(f"{part}: cannot write ({exc.strerror or exc}); run the command again to resume") from None
        if total is not None and size < total:
            raise _Interrupted(f"connection closed after {size} of {total} bytes")
        return size - offset
