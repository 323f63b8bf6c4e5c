"""Finding the submissions in what a TA passes: notebooks, folders, or class zips (LMS exports).

Archives are read in memory, never extracted: a `../` name, an absolute path or a symlink inside
one cannot write anywhere, and size limits stop zip bombs before they inflate.
"""

from __future__ import annotations

import hashlib
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path

MAX_MEMBER_BYTES = 50 * 1024 * 1024
MAX_ARCHIVE_BYTES = 2 * 1024 * 1024 * 1024
MAX_MEMBERS = 20000
MAX_RATIO = 200  # a notebook compresses ~5-20x; a bomb far more


@dataclass(frozen=True)
class Submission:
    name: str  # stable, unique label: the file name, or its path inside a folder or zip
    filename: str
    data: bytes
    error: str | None = None  # set when the file could not even be read

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def _skipped(name: str) -> bool:
    """Hidden files, macOS resource forks and Jupyter checkpoints are not submissions."""
    parts = Path(name).parts
    return any(p == "__MACOSX" or (p.startswith(".") and p not in (".", "..")) for p in parts)


def _member_label(name: str) -> str:
    """A zip member's name as a plain relative label: no root, no `..`, no `.`."""
    return "/".join(p for p in name.replace("\\", "/").split("/") if p not in ("", ".", ".."))


def _from_zip(path: Path, label: str) -> list[Submission]:
    found: list[Submission] = []
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        return [Submission(label, path.name, b"", f"{path.name}: not a readable zip ({error})")]
    with archive:
        members = archive.infolist()
        if len(members) > MAX_MEMBERS:
            return [Submission(label, path.name, b"", f"{path.name}: {len(members)} files is over the "
                               f"{MAX_MEMBERS} limit")]
        total = 0
        for info in members:
            if info.is_dir() or _skipped(info.filename):
                continue
            name = f"{label}/{_member_label(info.filename)}"
            if not info.filename.lower().endswith(".ipynb"):
                continue
            if stat.S_ISLNK(info.external_attr >> 16):
                found.append(Submission(name, Path(info.filename).name, b"", f"{info.filename}: a symbolic "
                                        "link, not a notebook; submit the notebook file itself"))
                continue
            ratio = info.file_size / max(info.compress_size, 1)
            total += info.file_size
            if info.file_size > MAX_MEMBER_BYTES or ratio > MAX_RATIO or total > MAX_ARCHIVE_BYTES:
                found.append(Submission(name, Path(info.filename).name, b"",
                                        f"{info.filename}: {info.file_size} bytes unpacked "
                                        f"(ratio {ratio:.0f}): refused as too large"))
                continue
            try:
                with archive.open(info) as member:
                    data = member.read(MAX_MEMBER_BYTES + 1)
            except (zipfile.BadZipFile, OSError, RuntimeError, EOFError) as error:
                found.append(Submission(name, Path(info.filename).name, b"",
                                        f"{info.filename}: unreadable in the zip ({error})"))
                continue
            found.append(Submission(name, Path(info.filename).name, data))
    if not found:
        found.append(Submission(label, path.name, b"", f"{path.name}: no .ipynb notebook inside the zip"))
    return found


def _read(path: Path, name: str) -> Submission:
    if path.is_symlink() and not path.resolve().is_file():
        return Submission(name, path.name, b"", f"{path.name}: a broken symbolic link")
    try:
        size = path.stat().st_size
        if size > MAX_MEMBER_BYTES:
            return Submission(name, path.name, b"", f"{path.name}: {size // 1024 // 1024} MB is over the "
                              f"{MAX_MEMBER_BYTES // 1024 // 1024} MB limit; clear large outputs "
                              "(Kernel > Restart & Clear Output), then save and submit again")
        return Submission(name, path.name, path.read_bytes())
    except OSError as error:
        return Submission(name, path.name, b"", f"{path.name}: cannot be read ({error.strerror})")


def collect(paths: list[Path]) -> list[Submission]:
    """Every submission found, in a stable order; names are unique."""
    found: list[Submission] = []
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                relative = child.relative_to(path)
                if child.is_file() and not _skipped(str(relative)):
                    label = f"{path.name}/{relative}"
                    if child.suffix.lower() == ".ipynb":
                        found.append(_read(child, label))
                    elif child.suffix.lower() == ".zip":
                        found.extend(_from_zip(child, label))
        elif path.suffix.lower() == ".zip" and path.is_file():
            found.extend(_from_zip(path, path.name))
        elif path.exists() or path.is_symlink():
            found.append(_read(path, path.name))
        else:
            found.append(Submission(path.name, path.name, b"", f"{path}: no such file"))
    return _unique(found)


def _unique(submissions: list[Submission]) -> list[Submission]:
    seen: dict[str, int] = {}
    unique = []
    for submission in submissions:
        count = seen.get(submission.name, 0)
        seen[submission.name] = count + 1
        if count:
            submission = Submission(f"{submission.name}#{count + 1}", submission.filename, submission.data,
                                    submission.error)
        unique.append(submission)
    return unique
