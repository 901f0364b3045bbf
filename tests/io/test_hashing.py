"""sha256 of adapter folders for the run metadata."""

from __future__ import annotations

import hashlib

from capdrift_fast.io.hashing import hash_folder


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
