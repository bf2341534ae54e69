"""open_source: Lakh layouts, any MIDI folder, and tar archives read as a stream."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from pipeline import sources
from pipeline.errors import SourceError
from pipeline.sources import SourceItem, open_source

SHARED_MIDI = Path(__file__).resolve().parents[2] / "shared" / "midi"
MSD = "TRAAAGR128F425B14B"  # TR + 16: a real MSD id shape
MAX = 10**7

# Smallest valid SMF (format 0, one empty track), used when ../shared/midi is absent.
_TINY_MIDI = b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x00\x60MTrk\x00\x00\x00\x04\x00\xff\x2f\x00"


def _midi_bytes(n: int) -> list[bytes]:
    files = sorted(SHARED_MIDI.glob("*.mid"))[:n] if SHARED_MIDI.is_dir() else []
    data = [f.read_bytes() for f in files]
    while len(data) < n:  # distinct bytes per file
        data.append(_TINY_MIDI + bytes([len(data)]))
    return data


def _write_tree(root: Path, rel_paths: list[str]) -> dict[str, bytes]:
    contents = dict(zip(rel_paths, _midi_bytes(len(rel_paths))))
    for rel, data in contents.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return contents


def _tar(path: Path, members: list[tuple[str, bytes]], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _payloads(source, **kwargs):
    return [(item.key, data, reason) for item, data, reason in source.iter_payloads(max_bytes=MAX, **kwargs)]


LAKH = [
    "lmd_full/0/0a1b2c3d4e5f60718293a4b5c6d7e8f9.mid",
    "lmd_full/f/f0e1d2c3b4a5968778695a4b3c2d1e0f.mid",
    f"lmd_matched/A/B/C/{MSD}/1234567890abcdef1234567890abcdef.mid",
    f"lmd_aligned/A/B/C/{MSD}/1234567890abcdef1234567890abcdef.mid",
    "clean_midi/ABBA/Dancing Queen.mid",
    "clean_midi/ABBA/Dancing Queen.1.mid",
]


def test_lakh_layouts_keys_and_msd_ids(tmp_path):
    contents = _write_tree(tmp_path, LAKH)
    source = open_source(tmp_path)
    items = source.items()
    assert [item.key for item in items] == sorted(LAKH)
    msd = {item.key: item.msd_id for item in items}
    assert msd[LAKH[2]] == MSD and msd[LAKH[3]] == MSD
    assert msd[LAKH[0]] is None and msd[LAKH[4]] is None
    assert all(item.size == len(contents[item.key]) for item in items)
    assert all(source.path_of(item) == tmp_path / item.key for item in items)
    assert _payloads(source) == [(key, contents[key], None) for key in sorted(LAKH)]


def test_msd_id_only_from_the_parent_folder(tmp_path):
    _write_tree(tmp_path, [f"{MSD}/sub/a.mid", "traaagr128f425b14b/b.mid", f"x/{MSD}X/c.mid", f"{MSD}.mid"])
    assert {item.key: item.msd_id for item in open_source(tmp_path).items()} == {
        f"{MSD}/sub/a.mid": None, "traaagr128f425b14b/b.mid": None, f"x/{MSD}X/c.mid": None, f"{MSD}.mid": None,
    }


def test_any_folder_mixed_extensions_and_case(tmp_path):
    midi = ["a.MID", "deep/er/b.midi", "c.Rmi", "d.mid", "._e.mid", ".hidden/f.MIDI"]
    _write_tree(tmp_path, midi)
    for junk in ["notes.txt", "g.mid.bak", "h.mi", "mid"]:
        (tmp_path / junk).write_bytes(b"x")
    (tmp_path / "dir.mid").mkdir()  # a folder with a MIDI name is not a file
    assert [item.key for item in open_source(tmp_path).items()] == sorted(midi)


def test_symlinks_followed_inside_root_only(tmp_path):
    root = tmp_path / "src"
    _write_tree(root, ["real/a.mid"])
    _write_tree(tmp_path, ["outside.mid"])
    (root / "inside-link.mid").symlink_to(root / "real" / "a.mid")
    (root / "outside-link.mid").symlink_to(tmp_path / "outside.mid")
    (root / "dangling.mid").symlink_to(root / "missing.mid")
    (root / "loop").symlink_to(root)  # folder symlinks are not descended
    (root / "out-dir").symlink_to(tmp_path)
    source = open_source(root)
    assert [item.key for item in source.items()] == ["inside-link.mid", "real/a.mid"]
    data = [d for _, d, _ in _payloads(source)]
    assert data[0] == data[1]


@pytest.mark.parametrize("suffix, mode", [(".tar.gz", "w:gz"), (".tgz", "w:gz"), (".tar", "w")])
def test_archive_matches_folder(tmp_path, suffix, mode):
    folder = tmp_path / "src"
    _write_tree(folder, LAKH + ["x/Y.MIDI"])
    (folder / "readme.txt").write_text("not midi")
    archive = tmp_path / f"lakh{suffix}"
    with tarfile.open(archive, mode) as tar:
        for item in open_source(folder).items():
            tar.add(folder / item.key, arcname=item.key)
        tar.add(folder / "readme.txt", arcname="readme.txt")
    from_folder, from_archive = open_source(folder), open_source(archive)
    assert from_archive.items() == from_folder.items()
    assert _payloads(from_archive) == _payloads(from_folder)
    assert from_archive.path_of(from_archive.items()[0]) is None


def test_archive_keeps_archive_order_and_strips_dot_slash(tmp_path):
    a, b, c = _midi_bytes(3)
    archive = _tar(tmp_path / "a.tgz", [("./z.mid", a), ("./dir/", b""), (f"./m/{MSD}/a.mid", b), ("b.mid", c)])
    source = open_source(archive)
    assert source.items() == [SourceItem("z.mid", None, len(a)), SourceItem(f"m/{MSD}/a.mid", MSD, len(b)),
                              SourceItem("b.mid", None, len(c))]
    assert _payloads(source, keys={"b.mid", "z.mid"}) == [("z.mid", a, None), ("b.mid", c, None)]


def test_archive_unsafe_and_special_members_are_reported(tmp_path):
    (good,) = _midi_bytes(1)
    archive = tmp_path / "bad.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in [("../evil.mid", good), ("/abs/evil.mid", good), ("ok/../../x.mid", good),
                           ("ok.mid", good), ("../not-midi.txt", b"x")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("link.mid")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
        hard = tarfile.TarInfo("hard.mid")
        hard.type, hard.linkname = tarfile.LNKTYPE, "ok.mid"
        tar.addfile(hard)
        fifo = tarfile.TarInfo("fifo.mid")
        fifo.type = tarfile.FIFOTYPE
        tar.addfile(fifo)
        folder = tarfile.TarInfo("folder.mid")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
    got = _payloads(open_source(archive))
    assert got == [
        ("../evil.mid", None, "unsafe archive member name"),
        ("/abs/evil.mid", None, "unsafe archive member name"),
        ("ok/../../x.mid", None, "unsafe archive member name"),
        ("ok.mid", good, None),
        ("link.mid", None, "not a regular file (symlink)"),
        ("hard.mid", None, "not a regular file (hard link)"),
        ("fifo.mid", None, "not a regular file (device or fifo)"),
    ]


def test_too_large_folder_item_is_not_read(tmp_path, monkeypatch):
    (small,) = _midi_bytes(1)
    big = small * 3
    (tmp_path / "big.mid").write_bytes(big)
    (tmp_path / "small.mid").write_bytes(small)
    limit = 2 * len(small)
    real_open = open

    def guarded_open(path, *args, **kwargs):
        assert Path(path).name != "big.mid", "a too-large file was opened"
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(sources, "open", guarded_open, raising=False)
    assert _payloads_limited(open_source(tmp_path), limit) == [
        ("big.mid", None, f"too large: {len(big)} bytes > max_bytes={limit}"),
        ("small.mid", small, None),
    ]


def _payloads_limited(source, max_bytes):
    return [(i.key, d, r) for i, d, r in source.iter_payloads(max_bytes=max_bytes)]


def test_too_large_archive_member_is_skipped_in_the_stream(tmp_path):
    archive = _tar(tmp_path / "a.tar.gz", [("big.mid", b"M" * 5000), ("small.mid", b"MThd")])
    assert _payloads_limited(open_source(archive), 100) == [
        ("big.mid", None, "too large: 5000 bytes > max_bytes=100"), ("small.mid", b"MThd", None)]


def test_decompression_bomb_guard(tmp_path):
    archive = _tar(tmp_path / "bomb.tar.gz", [("a.mid", bytes(4096)), ("b.mid", bytes(1 << 20))])
    with pytest.raises(SourceError, match="max_total_bytes=100000") as err:
        open_source(archive, max_total_bytes=100_000)
    assert "\n" not in str(err.value)


def test_unknown_keys_are_a_bug(tmp_path):
    _write_tree(tmp_path, ["a.mid"])
    with pytest.raises(ValueError, match="nope.mid"):
        list(open_source(tmp_path).iter_payloads({"nope.mid"}, max_bytes=MAX))


def _one_line_error(source: Path, **kwargs) -> str:
    with pytest.raises(SourceError) as err:
        open_source(source, **kwargs)
    message = str(err.value)
    assert "\n" not in message and str(source) in message
    return message


def test_missing_path(tmp_path):
    missing = tmp_path / "nope"
    assert _one_line_error(missing) == f"{missing}: no such file or folder"


def test_empty_folder_and_empty_archive(tmp_path):
    folder = tmp_path / "empty"
    (folder / "sub").mkdir(parents=True)
    (folder / "notes.txt").write_text("x")
    assert _one_line_error(folder) == f"{folder}: no .mid/.midi/.rmi files found"
    archive = _tar(tmp_path / "empty.tgz", [("notes.txt", b"x")])
    assert _one_line_error(archive) == f"{archive}: no .mid/.midi/.rmi files found"


@pytest.mark.parametrize("name", ["notes.txt", "song.mid", "archive.zip"])
def test_file_that_is_not_an_archive(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(_TINY_MIDI)
    message = _one_line_error(path)
    assert "not a folder or a supported archive" in message and ".tar.gz" in message


@pytest.mark.parametrize("data", [b"this is not a tar file at all" * 40, b"\x1f\x8b\x08\x00garbage"])
def test_corrupt_archive(tmp_path, data):
    path = tmp_path / "broken.tar.gz"
    path.write_bytes(data)
    assert "not a readable tar archive" in _one_line_error(path)


def test_truncated_archive(tmp_path):
    archive = _tar(tmp_path / "t.tar", [("a.mid", bytes(3000)), ("b.mid", bytes(3000))], mode="w")
    truncated = tmp_path / "cut.tar"
    truncated.write_bytes(archive.read_bytes()[:2000])
    assert "not a readable tar archive" in _one_line_error(truncated)


def test_duplicate_archive_members(tmp_path):
    archive = _tar(tmp_path / "dup.tar", [("a.mid", b"MThd1"), ("./a.mid", b"MThd2")], mode="w")
    assert "duplicate archive member 'a.mid'" in _one_line_error(archive)


def test_folder_keys_use_forward_slashes(tmp_path):
    _write_tree(tmp_path, ["a/b/c.mid"])
    (item,) = open_source(tmp_path).items()
    assert item.key == "a/b/c.mid" and os.sep not in item.key.replace("/", "")
