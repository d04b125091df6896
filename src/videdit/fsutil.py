"""Safe output files: check early, write to a temporary name, rename on success.

A run that fails half way (bad input, an exception, Ctrl-C) leaves no half-written output:
writers fill a temporary path in the destination folder, and only a finished result is
renamed onto the real name (`os.replace`, atomic within one file system).
"""

from __future__ import annotations

import os
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from videdit.errors import UserError


def cache_dir() -> Path:
    """``$VIDEDIT_CACHE_DIR``, else the platform's user cache folder + ``videdit``."""
    import sys

    if os.environ.get("VIDEDIT_CACHE_DIR"):
        return Path(os.environ["VIDEDIT_CACHE_DIR"]).expanduser()
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    elif os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "videdit"


def _nearest_existing(path: Path) -> Path:
    """The closest ancestor of `path` (or `path` itself) that exists."""
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def _missing_folders(folder: Path) -> list[Path]:
    """Folders from `folder` upwards that do not exist yet, outermost first."""
    missing = []
    while not os.path.lexists(folder) and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing[::-1]


def check_writable(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Raise `UserError` now, before any heavy work, if `path` cannot be written.

    The output must not exist unless `overwrite` is true, and its folder must exist and be
    writable, or be creatable inside the nearest existing, writable folder.
    Nothing is created. Returns `path` as a `Path`.
    """
    target = Path(path).expanduser()
    if os.path.lexists(target) and not overwrite:
        raise UserError(f"output already exists: {target} (pass --overwrite to replace it)")
    folder = target.parent
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        raise UserError(f"cannot create output folder {folder}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"output folder is not writable: {existing} (for {target})")
    longest = max([len(os.fsencode(p.name)) for p in _missing_folders(folder)]
                  + [len(os.fsencode(_temporary_name(target, "partial").name))])
    limit = _name_max(existing)
    if longest > limit:
        raise UserError(f"output name too long: {target.name!r} needs names of up to {longest} bytes "
                        f"(with its temporary name), and {existing} allows {limit}")
    _probe(existing, target)
    return target


def _name_max(folder: Path) -> int:
    """The longest file name (bytes) the file system of ``folder`` takes (255 where it does not say)."""
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def _probe(folder: Path, target: Path) -> None:
    """Create and remove a file in ``folder``: permissions can say yes where the file system says no
    (a read-only mount, /proc, a full disk). A `UserError` now, not after the work."""
    probe = folder / f".videdit-probe-{secrets.token_hex(4)}"
    try:
        probe.touch(exist_ok=False)
    except OSError as error:
        raise UserError(f"cannot write {target}: {folder} refuses new files ({error.strerror or error})") from None
    try:
        probe.unlink()
    except OSError:
        pass


def _temporary_name(target: Path, tag: str) -> Path:
    """A hidden sibling of `target` that keeps its suffix, e.g. `.out.1f2e3d4c.partial.mp4`."""
    return target.with_name(f".{target.stem}.{secrets.token_hex(4)}.{tag}{target.suffix}")


def remove_path(path: Path) -> None:
    """Remove a file, a link or a whole folder if present; never raise."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            path.unlink()
    except OSError:
        pass


def _move_into_place(temp: Path, target: Path, overwrite: bool) -> None:
    """Rename the finished `temp` onto `target`, replacing an older output only if allowed."""
    if not os.path.lexists(temp):
        raise RuntimeError(f"the writer produced nothing at {temp}")
    if not os.path.lexists(target):
        os.replace(temp, target)
        return
    if not overwrite:
        raise UserError(f"output already exists: {target} (pass --overwrite to replace it)")
    if temp.is_dir() or (target.is_dir() and not target.is_symlink()):
        # rename() cannot put a folder over a file, or anything over a non-empty folder:
        # move the old output aside, put the new one in place, then delete the old one.
        aside = _temporary_name(target, "old")
        os.replace(target, aside)
        try:
            os.replace(temp, target)
        except BaseException:
            os.replace(aside, target)
            raise
        remove_path(aside)
        return
    os.replace(temp, target)


@contextmanager
def atomic_target(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success rename it onto `path`.

    The body creates a file or a folder at the yielded path (which does not exist yet and
    keeps the suffix of `path`, so tools that pick a format by extension still work).
    Missing parent folders are created, and removed again if the body fails. On any
    failure the temporary output is removed and the exception propagates.
    """
    target = check_writable(path, overwrite)
    created = _missing_folders(target.parent)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create output folder {target.parent}: {error.strerror}") from None
    temp = _temporary_name(target, "partial")
    try:
        yield temp
        try:
            _move_into_place(temp, target, overwrite)
        except OSError as error:
            raise UserError(f"cannot write {target}: {error.strerror}") from None
    except BaseException:
        remove_path(temp)
        for folder in reversed(created):
            try:
                folder.rmdir()
            except OSError:
                break
        raise
