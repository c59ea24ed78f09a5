"""probe.files: atomic writes leave either the old file or the complete new one."""
from __future__ import annotations

import hashlib
import json

import pytest

from probe.files import atomic_open, atomic_write_json, sha256_file


def test_atomic_open_replaces_only_when_the_block_completes(tmp_path):
    target = tmp_path / "data.bin"
    target.write_bytes(b"old")
    with pytest.raises(ValueError, match="checksum"):
        with atomic_open(target) as f:
            f.write(b"half of the new")
            raise ValueError("checksum mismatch")  # e.g. a download that fails verification
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin"]  # no temporary left
    with atomic_open(target) as f:
        f.write(b"new")
        assert target.read_bytes() == b"old"  # not visible before the block ends
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin"]


def test_atomic_write_json_and_sha256_file(tmp_path):
    path = tmp_path / "x.json"
    atomic_write_json(path, {"b": "é", "a": [1, 2]}, indent=2, sort_keys=True)
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n") and text.index('"a"') < text.index('"b"') and "é" in text
    assert json.loads(text) == {"a": [1, 2], "b": "é"}
    assert sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()
