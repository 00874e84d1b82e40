"""Write files and folders so that a failure never leaves half-written output behind, and a user's files are
never lost.

Output folders (:func:`atomic_dir`) follow one rule:

* a path that does not exist (or an empty folder) is written as a new folder;
* a folder this tool wrote before — recognised by the marker file :data:`MARKER` it leaves there, which lists
  the files it wrote — gets its own files replaced (files of the previous output that the new one does not
  write are removed); anything else in it is left alone;
* any other non-empty folder is refused with an :class:`~momentseg.errors.OutputError`, unless ``overwrite``
  is given: then the new files are added next to the ones there. Even then a file that this tool did not
  write is never removed, replaced or renamed (a clash is an error), and a file is never turned into a folder.

New files are first written to a hidden temporary folder (next to a new folder, inside an existing one) and
renamed into place only when everything was written; on any exception (Ctrl-C, SIGTERM through the CLI's
handler) the temporary folder is deleted. :func:`check_output_dir` / :func:`check_output_file` apply the same
rules up front, so a command can refuse a bad ``--out`` before it computes anything.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

from momentseg._version import __version__
from momentseg.errors import OutputError

#: The file a folder written by momentseg carries: JSON ``{"written_by": "momentseg", "files": [...]}``.
MARKER = ".momentseg-output"
_TMP_PREFIX = ".momentseg-tmp."

# folders (absolute paths) that atomic_dir may write into even when another program's files are there
_overwrite_ok: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar("momentseg_overwrite", default=frozenset())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _absolute(path: str | os.PathLike) -> Path:
    """``path`` made absolute and normalised (``.`` / ``..`` resolved lexically), so ``--out .`` has a name."""
    return Path(os.path.abspath(os.fspath(path)))


# ------------------------------------------------------------------------------------------------- the marker
def read_marker(folder: str | os.PathLike) -> list[str] | None:
    """The files (relative POSIX paths) that momentseg wrote into ``folder``, or ``None`` when ``folder``
    carries no (valid) marker."""
    try:
        data = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("written_by") != "momentseg" or not isinstance(data.get("files"), list):
        return None
    return [f for f in data["files"] if _safe_relative(f)]


def _safe_relative(name) -> bool:
    if not isinstance(name, str) or not name or "\\" in name:
        return False
    p = PurePosixPath(name)
    return not p.is_absolute() and all(part not in ("", ".", "..") for part in p.parts) and name != MARKER


def write_marker(folder: str | os.PathLike, files: Iterable[str]) -> None:
    """Mark ``folder`` as momentseg's output holding ``files`` (relative POSIX paths)."""
    data = {"written_by": "momentseg", "version": __version__, "files": sorted(set(files))}
    atomic_write_text(Path(folder) / MARKER, json.dumps(data, indent=0) + "\n")


# ------------------------------------------------------------------------------------------------ up-front checks
def _probe_writable(folder: Path, shown: str, what: str) -> None:
    """Create and delete a file in ``folder``; a one-line error when that is not possible."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".momentseg-probe.", dir=folder)
    except OSError as exc:
        raise OutputError(f"{what} {shown}: cannot write in {folder}: {exc.strerror or exc}") from None
    os.close(fd)
    os.unlink(probe)


def _check_creatable(target: Path, shown: str, what: str) -> None:
    """A path that does not exist yet can be created: its nearest existing ancestor is a writable folder."""
    anc = target.parent
    while not (anc.exists() or anc.is_symlink()) and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise OutputError(f"{what} {shown}: {anc} is not a folder")
    _probe_writable(anc, shown, what)


def check_output_dir(path: str | os.PathLike, *, overwrite: bool = False, what: str = "output folder",
                     files: Iterable[str] = ()) -> Path:
    """Check, before any work, that ``path`` can receive an output folder under the rules of this module.

    Returns the absolute path. Raises :class:`OutputError` (one line) for a file at ``path``, a non-empty folder
    that momentseg did not write (without ``overwrite``), a location that is not writable, or one of ``files``
    (relative paths the output will write) already there and not momentseg's.
    """
    shown = os.fspath(path)
    target = _absolute(path)
    if target.exists() or target.is_symlink():
        if not target.is_dir():
            raise OutputError(f"{what} {shown} exists and is not a folder; momentseg never replaces a file with "
                              "a folder: choose another path")
        own = read_marker(target)
        if not overwrite and own is None and any(target.iterdir()):
            raise OutputError(f"{what} {shown} is a non-empty folder that momentseg did not write; choose a new "
                              "folder, or pass --overwrite to add the output to it (no file there is removed)")
        clash = [f for f in files if f not in (own or ()) and ((target / f).exists() or (target / f).is_symlink())]
        if clash:
            raise OutputError(f"{what} {shown} already holds {', '.join(clash)}, which momentseg did not write and "
                              "never replaces: move it away or choose another folder")
        _probe_writable(target, shown, what)
    else:
        _check_creatable(target, shown, what)
    return target


def check_output_file(path: str | os.PathLike, *, overwrite: bool = False, what: str = "output file") -> Path:
    """Check, before any work, that a single output file can be written at ``path``: not a folder, not an
    existing file (unless ``overwrite``), in a writable folder. Returns the absolute path."""
    shown = os.fspath(path)
    target = _absolute(path)
    if target.is_dir():
        raise OutputError(f"{what} {shown} is a folder; give a file name")
    if target.exists() or target.is_symlink():
        if not overwrite:
            raise OutputError(f"{what} {shown} already exists; choose another name or pass --overwrite to replace it")
        _probe_writable(target.parent, shown, what)
    else:
        _check_creatable(target, shown, what)
    return target


@contextlib.contextmanager
def allow_overwrite(*paths: str | os.PathLike) -> Iterator[None]:
    """Within this block, :func:`atomic_dir` on one of ``paths`` behaves as with ``overwrite=True`` (for writers
    such as ``save_pretrained`` that take no such argument)."""
    token = _overwrite_ok.set(_overwrite_ok.get() | {str(_absolute(p)) for p in paths})
    try:
        yield
    finally:
        _overwrite_ok.reset(token)


# ------------------------------------------------------------------------------------------------------ writers
@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path`` (a file).

    The temporary file keeps ``path``'s suffix so writers that look at the extension (PyAV, PIL) work.
    On an exception the temporary file is removed and ``path`` is left untouched. ``path`` must not be a folder.
    """
    path = _absolute(path)
    if path.is_dir():
        raise OutputError(f"cannot write the file {path}: it is a folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    tmp_path.chmod(0o666 & ~_umask())  # mkstemp makes it 0600; the final file gets normal permissions
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, *, overwrite: bool | None = None) -> Iterator[Path]:
    """Yield a temporary folder; on success its files appear at ``path`` under the rules of this module.

    ``overwrite``: allow writing into a non-empty folder that momentseg did not write (its files are kept);
    ``None`` means ``False`` unless the path is inside an :func:`allow_overwrite` block. On an exception the
    temporary folder is deleted and ``path`` is left as it was.
    """
    if overwrite is None:
        overwrite = str(_absolute(path)) in _overwrite_ok.get()
    target = check_output_dir(path, overwrite=overwrite)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it 0700; the final folder gets normal permissions
        try:
            yield tmp
            _normal_modes(tmp)
            write_marker(tmp, _files_under(tmp))
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return
    tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=target))
    tmp.chmod(0o777 & ~_umask())
    try:
        yield tmp
        _normal_modes(tmp)
        _merge(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _normal_modes(folder: Path) -> None:
    """Give every plain file the writer left owner-only (safetensors writes 0600) the usual 0666 & ~umask,
    so an output folder is as readable as any file the user creates; executable bits are kept."""
    mode = 0o666 & ~_umask()
    for dirpath, _, files in os.walk(folder):
        for name in files:
            f = Path(dirpath) / name
            if not f.is_symlink():
                current = f.stat().st_mode & 0o777
                f.chmod(mode | (current & 0o111 & ~_umask()))


def _files_under(folder: Path) -> list[str]:
    """Relative POSIX paths of the files (and links) under ``folder``, the marker excluded."""
    out = []
    for dirpath, dirs, files in os.walk(folder):
        rel = Path(dirpath).relative_to(folder)
        out += [(rel / f).as_posix() for f in files]
        out += [(rel / d).as_posix() for d in dirs if (Path(dirpath) / d).is_symlink()]
    return sorted(f for f in out if f != MARKER)


def _empty_dirs_under(folder: Path) -> list[str]:
    return sorted(Path(d).relative_to(folder).as_posix() for d, dirs, files in os.walk(folder)
                  if not dirs and not files and Path(d) != folder)


def _merge(tmp: Path, target: Path) -> None:
    """Move the files of ``tmp`` into the existing folder ``target``, replacing only momentseg's own files."""
    new = _files_under(tmp)
    own = set(read_marker(target) or [])
    for rel in new:  # check every clash before moving anything
        dst = target / rel
        for parent in list(PurePosixPath(rel).parents)[-2::-1]:  # target/a, target/a/b, ...
            p = target / parent
            if (p.exists() or p.is_symlink()) and (p.is_symlink() or not p.is_dir()):
                raise OutputError(f"cannot write {dst}: {p} is a file, not a folder (momentseg keeps it)")
        if dst.exists() or dst.is_symlink():
            if dst.is_dir() and not dst.is_symlink():
                raise OutputError(f"cannot write {dst}: a folder is there (momentseg keeps it)")
            if rel not in own:
                raise OutputError(f"cannot write {dst}: a file that momentseg did not write is there; move it "
                                  "away or choose another output folder")
    write_marker(target, own | set(new))  # an interruption below leaves every file of ours listed
    for rel in _empty_dirs_under(tmp):
        (target / rel).mkdir(parents=True, exist_ok=True)
    for rel in new:
        dst = target / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / rel, dst)
    for rel in sorted(own - set(new)):  # our previous output's files that the new output does not have
        old = target / rel
        if old.is_symlink() or old.is_file():
            old.unlink()
            for parent in PurePosixPath(rel).parents:
                if str(parent) == ".":
                    break
                with contextlib.suppress(OSError):  # only empty folders go
                    (target / parent).rmdir()
    write_marker(target, new)
