"""Atomic writes: the new content whole, or the old content untouched."""

import pytest

from slamctl.files import atomic_path, write_atomic


def test_write_atomic_text_and_bytes(tmp_path):
    write_atomic(tmp_path / "a.json", "{}\n")
    write_atomic(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "a.json").read_text() == "{}\n" and (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    write_atomic(tmp_path / "a.json", "[]\n")
    assert (tmp_path / "a.json").read_text() == "[]\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.bin"]


def test_a_failed_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "results.csv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half a")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]  # no temporary file left behind


def test_concurrent_writers_of_one_file_do_not_collide(tmp_path):
    """Two runs sharing one --out write the same names at once: each write is whole."""
    from concurrent.futures import ThreadPoolExecutor

    def write(i: int) -> None:
        for _ in range(50):
            write_atomic(tmp_path / "run_summary.json", f"{i}\n" * 1000)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, range(4)))
    assert len(set((tmp_path / "run_summary.json").read_text().splitlines())) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["run_summary.json"]
