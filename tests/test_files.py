"""Writes are temp-file-and-rename: a write that fails half-way leaves the file's old bytes and no temp file."""

from __future__ import annotations

import pytest
from PIL import Image

from rm_edit.files import dump_json, save_image, write_atomic, write_text


def _only(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_write_that_fails_half_way_leaves_the_old_bytes_and_no_temp_file(tmp_path):
    path = tmp_path / "summary.json"
    dump_json(path, {"done": 1})
    old = path.read_bytes()

    def half(fh):
        fh.write(b'{"done": 2, "rows": [')  # some bytes reach the disk, then the writer dies
        raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space left"):
        write_atomic(path, half)
    assert path.read_bytes() == old
    assert _only(tmp_path) == ["summary.json"]


def test_an_image_that_fails_to_encode_leaves_the_old_image(tmp_path):
    path = tmp_path / "edit.png"
    save_image(path, Image.new("RGB", (4, 4), (10, 20, 30)))
    old = path.read_bytes()

    class Breaks:
        def save(self, fh, **kwargs):
            fh.write(b"\x89PNG\r\n\x1a\n half an image")
            raise ValueError("encoder failed")

    with pytest.raises(ValueError, match="encoder failed"):
        save_image(path, Breaks())
    assert path.read_bytes() == old and _only(tmp_path) == ["edit.png"]


def test_a_first_write_that_fails_leaves_nothing(tmp_path):
    def fails(fh):
        fh.write("partial")
        raise KeyboardInterrupt  # an interrupt too: the temp file goes, the target never appears

    with pytest.raises(KeyboardInterrupt):
        write_atomic(tmp_path / "notes.txt", fails, mode="w")
    assert _only(tmp_path) == []
    write_text(tmp_path / "notes.txt", "whole")
    assert (tmp_path / "notes.txt").read_text() == "whole"
