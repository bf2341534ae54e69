"""pipeline fetch-lmd against a real HTTP server on loopback: a full download, a dropped
connection resumed with Range, a server that ignores Range, a corrupted archive, a 404, and
build-lpd reading the downloaded archive as it is."""

from __future__ import annotations

import hashlib
import http.server
import json
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pandas as pd
import pytest

from pipeline import fetch
from pipeline.errors import FetchError, ParamsError
from pipeline.fetch import Remote

ARCHIVE = "lmd_full.tar.gz"
SCORES = "match_scores.json"


class LmdServer(http.server.ThreadingHTTPServer):
    """Serves ``files`` (name -> bytes) with single-range support.

    ``cut_after``: full (non-Range) answers announce the whole length, send this many bytes
    and close the connection. ``ignore_range``: answer Range requests with the whole file.
    ``requests`` records ``(path, Range header)`` of every request.
    """

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.cut_after: int | None = None
        self.ignore_range = False
        self.requests: list[tuple[str, str | None]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/lmd/"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        srv: LmdServer = self.server
        rng = self.headers.get("Range")
        srv.requests.append((self.path, rng))
        name = self.path.removeprefix("/lmd/")
        if name not in srv.files:
            self.send_error(404, "Not Found")
            return
        data = srv.files[name]
        start = 0
        if rng and not srv.ignore_range:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if start == 0 and srv.cut_after is not None:
            self.wfile.write(body[: srv.cut_after])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    srv = LmdServer()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _lmd_archive(small_corpus: Path) -> bytes:
    """The test corpus as LMD-full lays it out: lmd_full/<dir>/<name>."""
    path = small_corpus.parent / "lmd_full.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for p in sorted(small_corpus.rglob("*")):
            if p.is_file():
                tar.add(p, arcname=f"lmd_full/{p.relative_to(small_corpus)}")
    return path.read_bytes()


@pytest.fixture
def lmd(server, small_corpus, monkeypatch):
    """The server holds a small lmd_full.tar.gz and match_scores.json, their sums in the table."""
    archive = _lmd_archive(small_corpus)
    scores = json.dumps({"TRAAAGR128F425B14B": {"0" * 32: 0.9}}).encode()
    server.files = {ARCHIVE: archive, SCORES: scores}
    monkeypatch.setitem(fetch.FILES, ARCHIVE, Remote(size=len(archive), md5=hashlib.md5(archive).hexdigest(),
                                                     sha256=None))
    monkeypatch.setitem(fetch.FILES, SCORES, Remote(size=None, md5=None,
                                                    sha256=hashlib.sha256(scores).hexdigest()))
    return server


def _fetch(server, out: Path, **kw):
    kw.setdefault("retry_wait_s", 0.0)
    return fetch.fetch_lmd("full", out, url_base=server.url, **kw)


def test_full_download_verifies(lmd, tmp_path):
    out = tmp_path / "lmd"
    logged = []
    results = _fetch(lmd, out, progress=True, log=logged.append)
    archive, scores = results
    assert (archive.status, archive.checked, archive.received) == ("downloaded", ("md5",), len(lmd.files[ARCHIVE]))
    assert (scores.status, scores.checked) == ("downloaded", ("sha256",))
    assert (out / ARCHIVE).read_bytes() == lmd.files[ARCHIVE]
    assert (out / SCORES).read_bytes() == lmd.files[SCORES]
    assert not list(out.glob("*.part"))
    assert logged[0].startswith(f"{ARCHIVE}: downloaded ({len(lmd.files[ARCHIVE])} bytes), md5 verified")
    # A second run finds both in place, checks them again and sends no request.
    n = len(lmd.requests)
    again = _fetch(lmd, out)
    assert [r.status for r in again] == ["present", "present"] and len(lmd.requests) == n
    assert fetch.next_command("full", out) == \
        f"pipeline build-lpd {out / ARCHIVE} --match-scores {out / SCORES}"


def test_interrupted_download_resumes_with_range(lmd, tmp_path):
    out = tmp_path / "lmd"
    data = lmd.files[ARCHIVE]
    lmd.cut_after = len(data) // 3
    with pytest.raises(FetchError) as err:
        _fetch(lmd, out, retries=0)
    message = str(err.value)
    assert "\n" not in message and f"connection closed after {len(data) // 3} of {len(data)} bytes" in message
    assert "is kept: run the command again to resume" in message
    part = out / (ARCHIVE + ".part")
    assert part.read_bytes() == data[: len(data) // 3] and not (out / ARCHIVE).exists()

    archive, _ = _fetch(lmd, out, retries=0)  # full answers are still cut: only Range can finish it
    assert archive.status == "resumed" and archive.received == len(data) - len(data) // 3
    assert (out / ARCHIVE).read_bytes() == data and not part.exists()
    assert (f"/lmd/{ARCHIVE}", f"bytes={len(data) // 3}-") in lmd.requests


def test_dropped_connection_is_resumed_within_one_run(lmd, tmp_path):
    lmd.cut_after = 1000
    archive, _ = _fetch(lmd, tmp_path / "lmd", retries=1)
    assert archive.status == "resumed" and (tmp_path / "lmd" / ARCHIVE).read_bytes() == lmd.files[ARCHIVE]
    assert [r for p, r in lmd.requests if p.endswith(ARCHIVE)] == [None, "bytes=1000-"]


def test_server_that_ignores_range_starts_over(lmd, tmp_path):
    out = tmp_path / "lmd"
    out.mkdir()
    data = lmd.files[ARCHIVE]
    (out / (ARCHIVE + ".part")).write_bytes(data[:500])
    lmd.ignore_range = True
    archive, _ = _fetch(lmd, out)
    assert archive.status == "restarted" and archive.received == len(data)
    assert (out / ARCHIVE).read_bytes() == data  # not the 500 bytes twice


def test_a_complete_part_is_verified_without_a_download(lmd, tmp_path):
    out = tmp_path / "lmd"
    out.mkdir()
    (out / (ARCHIVE + ".part")).write_bytes(lmd.files[ARCHIVE])
    archive, _ = _fetch(lmd, out)
    assert (archive.status, archive.received, archive.checked) == ("resumed", 0, ("md5",))
    assert (out / ARCHIVE).read_bytes() == lmd.files[ARCHIVE]


def test_corrupted_archive_fails_and_leaves_nothing(lmd, tmp_path):
    out = tmp_path / "lmd"
    good = lmd.files[ARCHIVE]
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF
    lmd.files[ARCHIVE] = bytes(bad)
    with pytest.raises(FetchError) as err:
        _fetch(lmd, out)
    expected, got = hashlib.md5(good).hexdigest(), hashlib.md5(bad).hexdigest()
    assert str(err.value) == (f"{lmd.url}{ARCHIVE}: md5 mismatch: expected {expected}, got {got}; "
                              "the download was deleted, run the command again to fetch it afresh")
    assert not (out / ARCHIVE).exists() and not (out / (ARCHIVE + ".part")).exists()


def test_a_corrupted_file_in_place_is_reported_not_replaced(lmd, tmp_path):
    out = tmp_path / "lmd"
    out.mkdir()
    (out / ARCHIVE).write_bytes(b"not the archive")
    with pytest.raises(FetchError, match="already exists but its md5 mismatch: expected .*delete it"):
        _fetch(lmd, out)
    assert (out / ARCHIVE).read_bytes() == b"not the archive" and lmd.requests == []


def test_no_published_sum_is_said_not_pretended(lmd, tmp_path, monkeypatch):
    monkeypatch.setitem(fetch.FILES, ARCHIVE, Remote(size=None, md5=None, sha256=None))
    archive, _ = _fetch(lmd, tmp_path / "lmd")
    assert archive.checked == () and archive.md5 == hashlib.md5(lmd.files[ARCHIVE]).hexdigest()
    assert "(no published sum to check it against)" in archive.describe()


def test_bad_options(tmp_path):
    with pytest.raises(ParamsError, match="--variant='lpd' must be one of full, matched, aligned, clean"):
        fetch.fetch_lmd("lpd", tmp_path)
    with pytest.raises(ParamsError, match="--url-base='file:///tmp' must be an http"):
        fetch.fetch_lmd("full", tmp_path, url_base="file:///tmp")
    with pytest.raises(ParamsError, match="--retries=-1"):
        fetch.fetch_lmd("full", tmp_path, retries=-1)


def test_table_covers_every_variant():
    for variant, names in fetch.ARCHIVES.items():
        for name in names:
            remote = fetch.FILES[name]
            assert remote.md5 or remote.sha256, name  # every file has a sum to check
            for value, n in ((remote.md5, 32), (remote.sha256, 64)):
                assert value is None or (len(value) == n and int(value, 16) >= 0)
    assert fetch.next_command("clean", Path("d")) == "pipeline build-lpd d/clean_midi.tar.gz"


def test_build_lpd_reads_the_downloaded_archive(lmd, tmp_path, small_corpus):
    from pipeline.stages import build_lpd as stage

    out = tmp_path / "lmd"
    _fetch(lmd, out)
    lpd = tmp_path / "lpd"
    summary = stage.run(source=out / ARCHIVE, out=lpd, params=stage.Params(), workers=1,
                        match_scores=out / SCORES)
    m = pd.read_parquet(lpd / "manifest.parquet")
    members = sorted(f"lmd_full/{p.relative_to(small_corpus)}" for p in small_corpus.rglob("*") if p.is_file())
    assert sorted(m.source) == members and summary["files"] == len(members) == 10
    assert (m.status == "ok").sum() == 8 and set(m[m.status == "error"].source) == \
        {"lmd_full/b/page.mid", "lmd_full/b/empty.midi"}


def _cli(*args: str, env_url: str | None = None) -> subprocess.CompletedProcess:
    import os

    env = dict(os.environ, PIPELINE_PROGRESS="0")
    if env_url:
        env["PIPELINE_LMD_URL"] = env_url
    return subprocess.run([sys.executable, "-c", "from pipeline.cli import main; main()", "fetch-lmd", *args],
                          capture_output=True, text=True, timeout=120, env=env)


def test_cli_404_is_one_line(server, tmp_path):
    res = _cli("--variant", "aligned", "--out", str(tmp_path / "lmd"), env_url=server.url)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert res.stderr.strip() == f"error: {server.url}lmd_aligned.tar.gz: HTTP 404 Not Found"


def test_cli_checks_the_real_table(server, small_corpus, tmp_path):
    """Served bytes that are not the real LMD archive fail against the real published sum."""
    data = _lmd_archive(small_corpus)
    server.files = {"lmd_aligned.tar.gz": data}
    res = _cli("--variant", "aligned", "--out", str(tmp_path / "lmd"), "--url-base", server.url)
    assert res.returncode == 1 and res.stderr.count("\n") == 1
    assert (f"md5 mismatch: expected d36ca9159966d81d97e1e37d10ed4584, got {hashlib.md5(data).hexdigest()}"
            in res.stderr)
    assert [p.name for p in (tmp_path / "lmd").iterdir()] == [".lock"]  # no archive, no part


def test_cli_bad_variant_is_one_line(tmp_path):
    res = _cli("--variant", "huge", "--out", str(tmp_path / "lmd"))
    assert res.returncode == 2  # a value outside the option's choices: a usage error, one line
    assert res.stderr.strip() == ("error: Invalid value for '--variant': 'huge' is not one of 'full', 'matched', "
                                  "'aligned', 'clean'.")
