"""Where a run folder lives and how a file lands in it: a local path or a `RemotePath`
behind a URI (``s3://bucket/runs``, any scheme pyarrow.fs knows; ``file://`` URIs are
plain paths), and atomic writes (temp file, fsync, rename locally; one whole object
remotely), so a crash never leaves half a file.
"""
from __future__ import annotations

import errno
import os
import tempfile
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow.fs as pafs

from raysweep.errors import StorageFullError, StudyError
from raysweep.store.redact import redact_text


def _pafs():
    # pyarrow is imported when a URI is used: `status` and `report` of a local run
    # start without it.
    import pyarrow.fs

    return pyarrow.fs


@dataclass(frozen=True, order=True)
class RemotePath:
    """The few `pathlib.Path` operations a run folder needs, on a pyarrow filesystem."""
    scheme: str
    path: str
    fs: pafs.FileSystem = field(compare=False, repr=False)

    def __truediv__(self, part: str) -> "RemotePath":
        return RemotePath(self.scheme, f"{self.path.rstrip('/')}/{part}", self.fs)

    def __str__(self) -> str:
        return f"{self.scheme}://{self.path}"

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def parent(self) -> "RemotePath":
        return RemotePath(self.scheme, self.path.rstrip("/").rsplit("/", 1)[0], self.fs)

    def _type(self):
        return self.fs.get_file_info(self.path).type

    def is_file(self) -> bool:
        return self._type() == _pafs().FileType.File

    def is_dir(self) -> bool:
        return self._type() == _pafs().FileType.Directory

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        self.fs.create_dir(self.path, recursive=parents)

    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self.path) as f:
            return f.read()

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def write_bytes(self, data: bytes) -> None:
        with self.fs.open_output_stream(self.path) as f:
            f.write(data)

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode())

    def iterdir(self) -> list["RemotePath"]:
        found = self.fs.get_file_info(_pafs().FileSelector(self.path, allow_not_found=True))
        return [RemotePath(self.scheme, i.path, self.fs) for i in found]

    def rmtree(self) -> None:
        self.fs.delete_dir(self.path)

    def unlink(self, missing_ok: bool = False) -> None:
        if not (missing_ok and not self.is_file()):
            self.fs.delete_file(self.path)

    def glob(self, pattern: str) -> list["RemotePath"]:
        found = self.fs.get_file_info(_pafs().FileSelector(self.path, allow_not_found=True))
        return [RemotePath(self.scheme, i.path, self.fs) for i in found
                if i.type == _pafs().FileType.File and fnmatch(i.base_name, pattern)]


def run_location(storage: str, name: str) -> Path | RemotePath:
    """`<storage>/<name>`: a local path (``~`` expanded, absolute) or a RemotePath."""
    if "://" not in storage:
        return Path(os.path.expanduser(storage)).resolve() / name
    try:
        fs, path = _pafs().FileSystem.from_uri(storage)
    except (ValueError, OSError) as exc:  # pyarrow's ArrowInvalid repeats the whole URI
        raise StudyError(f"--storage {redact_text(storage)!r} is not a storage URI pyarrow "
                         f"can open: {redact_text(str(exc).splitlines()[0])}") from None
    if isinstance(fs, _pafs().LocalFileSystem):
        return Path(path).resolve() / name
    return RemotePath(storage.split("://", 1)[0], path, fs) / name


def _location(run_dir) -> Path | RemotePath:
    return run_dir if isinstance(run_dir, RemotePath) else Path(run_dir)


def location(text: str) -> Path | RemotePath:
    """A run folder from its `str()` form (a path or a URI), as workers receive it."""
    if "://" not in text:
        return Path(text)
    parent, _, name = text.rstrip("/").rpartition("/")
    return run_location(parent, name)


def atomic_write_bytes(path: Path | RemotePath, data: bytes) -> None:
    if isinstance(path, RemotePath):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return
    atomic_write(Path(path), lambda f: f.write(data))


def atomic_write_text(path: Path | RemotePath, text: str) -> None:
    if isinstance(path, RemotePath):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    atomic_write(Path(path), lambda f: f.write(text), binary=False)


# mkstemp makes 0600 files; a record or a table gets the mode a plain open() gives it.
_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK


def atomic_write(path: Path, write, binary: bool = True) -> None:
    """Call `write(file)` on a temp file beside `path`, fsync, rename over `path`:
    a crash, or a full disk, leaves the old file whole and no temp file behind."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        _raise_if_full(exc, path)
        raise
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        _raise_if_full(exc, path)
        raise


def _raise_if_full(exc: BaseException, path: Path) -> None:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        raise StorageFullError(
            f"no space left on the device of {path.parent} to write {path.name}: free space "
            f"there (or use another --storage) and run the study again with --resume; every "
            f"record and checkpoint written before is intact") from None


def what_is(path: Path) -> str:
    """What is at `path`, for a message that names what was found instead of a study file
    or a run folder: `does not exist`, `is a folder`, `is a character device`, ..."""
    import stat

    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "does not exist"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    kinds = ((stat.S_ISDIR, "is a folder"), (stat.S_ISREG, "is a file"),
             (stat.S_ISCHR, "is a character device"), (stat.S_ISBLK, "is a block device"),
             (stat.S_ISFIFO, "is a named pipe"), (stat.S_ISSOCK, "is a socket"))
    return next((text for test, text in kinds if test(mode)), "is not a regular file")
