"""sha256 of adapter folders for the run metadata, and comparing two runs' hashes (resume and shard
merge refuse changed model/adapter files)."""

from __future__ import annotations

import hashlib

import pytest

from capdrift_fast.rundir.hashing import changed_files, hash_folder


def test_hash_folder_hashes_every_file_by_relative_path(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "adapter_model.safetensors").write_bytes(b"\x00" * (3 << 20) + b"tail")  # > one read chunk
    (tmp_path / "sub" / "adapter_config.json").write_text('{"r": 8}')
    got = hash_folder(tmp_path)
    assert list(got) == ["adapter_model.safetensors", "sub/adapter_config.json"]
    assert got["adapter_model.safetensors"] == hashlib.sha256(b"\x00" * (3 << 20) + b"tail").hexdigest()
    assert got["sub/adapter_config.json"] == hashlib.sha256(b'{"r": 8}').hexdigest()
    (tmp_path / "sub" / "adapter_config.json").write_text('{"r": 16}')
    assert hash_folder(tmp_path)["sub/adapter_config.json"] != got["sub/adapter_config.json"]


def test_hash_of_a_file_and_of_a_hub_id(tmp_path):
    f = tmp_path / "w.bin"
    f.write_bytes(b"abc")
    assert hash_folder(f) == {"w.bin": hashlib.sha256(b"abc").hexdigest()}
    assert hash_folder("org/some-adapter-on-the-hub") == {}


def files(model=None, **adapters):
    return {"model": {"sha256": model}, "adapters": {n: {"sha256": h} for n, h in adapters.items()}}


@pytest.mark.parametrize(("before", "now", "want"), [
    (files({"w": "1"}, a={"x": "1"}), files({"w": "1"}, a={"x": "1"}), None),
    (files({"w": "1", "c": "2"}, a={"x": "1"}), files({"w": "9", "c": "2"}, a={"x": "2"}), (None, ["w"])),
    (files(None, a={"x": "1"}, b={"y": "1", "z": "1"}), files(None, a={"x": "1"}, b={"y": "2", "z": "1"}),
     ("b", ["y"])),
    (files({"w": "1"}, a={"x": "1"}), files({"w": "1"}, a={"x": "1", "extra": "3"}), ("a", ["extra"])),
    (files(None, a={"x": "1"}), files({"w": "1"}, b={"x": "2"}), None),  # hub id / adapter on one side only
    ({}, files({"w": "1"}), None),
])
def test_changed_files_names_the_first_changed_model_or_adapter(before, now, want):
    assert changed_files(before, now) == want


def test_changed_files_on_real_folders(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "adapter_model.safetensors").write_bytes(b"one")
    before = files(adapter=hash_folder(tmp_path / "a"))
    (tmp_path / "a" / "adapter_model.safetensors").write_bytes(b"two")
    assert changed_files(before, files(adapter=hash_folder(tmp_path / "a"))) == ("adapter", ["adapter_model.safetensors"])
