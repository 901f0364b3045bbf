"""Path safety (capdrift_fast.rundir.paths): names that are not one plain component, symlinks on the way and
paths resolving outside the folder are refused."""

from __future__ import annotations

import pytest

from capdrift_fast.errors import RunDirError
from capdrift_fast.rundir.paths import check_part, inside


@pytest.mark.parametrize("bad", ["..", ".", "", "a/b", "../../x", "/abs", "a\\b", "nul\0"])
def test_bad_parts_are_refused(tmp_path, bad):
    with pytest.raises(RunDirError, match="not a plain file name"):
        inside(tmp_path, bad)
    with pytest.raises(RunDirError):
        check_part(bad)


def test_symlink_on_the_way_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "run"
    root.mkdir()
    (root / "lm_eval").symlink_to(outside)
    with pytest.raises(RunDirError, match="is a symbolic link"):
        inside(root, "lm_eval", "base")
    (root / "real").mkdir()
    (root / "real" / "x.json").symlink_to(outside / "x.json")
    with pytest.raises(RunDirError, match="is a symbolic link"):
        inside(root, "real", "x.json")
    assert inside(root, "real", "y.json") == root.resolve() / "real" / "y.json"
    assert inside(root) == root.resolve()
