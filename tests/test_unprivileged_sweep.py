"""The Gradescope sandbox's sweep, on its own (the whole runtime runs in test_gradescope_zip.py's
container): whatever tree the kernel's uid leaves, however deep, is removed without a crash."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from autograder.sandbox.local import FIRST_UID, SLOTS
from autograder.sandbox.unprivileged import _remove_owned

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="hands files to another uid: needs root")
UID = FIRST_UID + SLOTS + 11  # no sandbox's: nothing else of this uid exists


def test_a_tree_deeper_than_the_recursion_limit_or_path_max_is_removed(tmp_path: Path) -> None:
    place = tmp_path / "tmp"  # stands for /tmp: a folder the uid may write in
    place.mkdir()
    folder = os.open(place, os.O_RDONLY)
    for _ in range(1500):  # 1,500 levels of 200-character names: far past PATH_MAX and the recursion limit
        name = "d" * 200
        os.mkdir(name, dir_fd=folder)
        os.chown(name, UID, UID, dir_fd=folder, follow_symlinks=False)
        inner = os.open(name, os.O_RDONLY, dir_fd=folder)
        with open(os.open("f", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=inner), "w") as marker:
            marker.write("x")
        os.close(folder)
        folder = inner
    os.close(folder)
    (place / "kept").write_text("root's")  # not the uid's: stays
    os.symlink("/etc", place / "link")
    os.lchown(place / "link", UID, UID)
    assert _remove_owned(place, UID) == []
    assert sorted(p.name for p in place.iterdir()) == ["kept"]
    assert Path("/etc/hostname").exists() or Path("/etc").is_dir()  # the symlink went, not its target
