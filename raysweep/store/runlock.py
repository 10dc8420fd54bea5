"""One `raysweep run` per run folder: `RunLock(run_dir)` holds `<run>/.lock` while a run
writes the folder, so a second run of the same study (same --name and storage) is refused
with one line instead of training every trial again beside the first.

    with RunLock(run_dir):          # RunLockedError if another live run holds it
        ...                         # run the study

The lock file is JSON (`LockHolder`): host, pid, process start time, when it was taken and
a heartbeat that a daemon thread refreshes every `heartbeat_s` seconds. A lock is *stale*,
and the next run takes it over with a `StaleLockWarning`, when its holder is gone:

- same host and same process table (boot id + pid namespace): the pid no longer exists, or
  it is another process now (its start time differs: the pid was reused). A SIGKILLed
  `raysweep run` is thus taken over at once.
- another host (shared storage): no heartbeat for `MISSED_BEATS` heartbeat intervals of the
  holder (30 s by default). This compares the holder's clock with ours: hosts must agree on
  the time to within a few seconds (NTP).

Guarantees. Local and POSIX shared filesystems (NFS, Lustre, CephFS): the lock is created
atomically with its whole content (written to a temp file, then `os.link`ed to `.lock`,
which fails if `.lock` exists; `O_EXCL` where the filesystem has no hard links), so two
runs can never both create it; a stale lock is removed only under a second exclusive file
(`.lock.takeover`) after re-reading it, so two runs that find the same stale lock cannot both
take it over. Object stores (`RemotePath`: s3://, gs://, ...) have no atomic create: the
lock object is written, read back after `settle_s` seconds, and kept only if it still
carries this run's token (stores with read-after-write consistency: S3, GCS, Azure). A run
that starts while another's lock is visible is refused; two runs whose check-then-write
steps interleave within milliseconds can both start, and the heartbeat of the overwritten
one then finds the other's token and warns (`RunLock.lost`); this is best effort, not
mutual exclusion.

Released on normal exit, on an exception and on Ctrl-C (KeyboardInterrupt). SIGKILL (or
SIGTERM without a handler) leaves the file: the next run finds the holder gone and takes
it over.
"""
from __future__ import annotations

import errno
import json
import os
import platform
import threading
import time
import uuid
import warnings
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import psutil

from raysweep.errors import RunLockedError, StudyError
from raysweep.store.storage import RemotePath, atomic_write_text

LOCK_NAME = ".lock"
TAKEOVER_NAME = ".lock.takeover"
HEARTBEAT_S = 10.0        # seconds between two heartbeats of a holder
MISSED_BEATS = 3          # another host's lock is stale after this many missed heartbeats
SETTLE_S = 1.0            # object stores: seconds between writing the lock and reading it back
TAKEOVER_STALE_S = 10.0   # a takeover guard older than this (seconds) was left by a dead run
START_TIME_TOLERANCE_S = 0.5  # process start times are equal within this (seconds)


class StaleLockWarning(UserWarning):
    """A lock left by a run that is gone was taken over."""


@dataclass(frozen=True)
class LockHolder:
    """Who holds a run folder: the content of `<run>/.lock`."""
    host: str
    pid: int
    pid_space: str | None       # boot id + pid namespace: where `pid` means this process
    started_unix_s: float       # the holder process's start time (seconds since the epoch)
    since_unix_s: float         # when it took the lock
    heartbeat_unix_s: float     # its last heartbeat (its own clock)
    heartbeat_interval_s: float
    token: str                  # unique per acquisition

    @classmethod
    def me(cls, heartbeat_s: float) -> "LockHolder":
        now = time.time()
        return cls(platform.node(), os.getpid(), pid_space(), psutil.Process().create_time(),
                   now, now, heartbeat_s, uuid.uuid4().hex)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "LockHolder | None":
        """The holder, or None for a file that is not a lock of this version."""
        try:
            return cls(**json.loads(text))
        except (ValueError, TypeError):
            return None

    def beat(self) -> "LockHolder":
        return LockHolder(**{**asdict(self), "heartbeat_unix_s": time.time()})

    def gone(self) -> str | None:
        """Why this holder cannot be running any more, or None while it may be."""
        if self is UNREADABLE:
            return "nobody can prove they hold it"
        if self.host == platform.node() and self.pid_space == pid_space():
            return _process_gone(self.pid, self.started_unix_s)
        lease = MISSED_BEATS * self.heartbeat_interval_s
        silent = time.time() - self.heartbeat_unix_s
        return f"no heartbeat for {silent:.0f} s (lease {lease:g} s)" if silent > lease else None

    def describe(self) -> str:
        if self is UNREADABLE:
            return "an unreadable lock file"
        beat = time.time() - self.heartbeat_unix_s
        return (f"host {self.host}, pid {self.pid}, since {_utc(self.since_unix_s)}, "
                f"last heartbeat {beat:.0f} s ago")


def pid_space() -> str | None:
    """This boot of this machine and this pid namespace (Linux); None elsewhere."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return None


def _process_gone(pid: int, started_unix_s: float) -> str | None:
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return f"pid {pid} has exited"
        started = proc.create_time()
    except psutil.NoSuchProcess:
        return f"pid {pid} is gone"
    except psutil.AccessDenied:
        return None  # alive, owned by someone else: assume it is the holder
    if abs(started - started_unix_s) > START_TIME_TOLERANCE_S:
        return f"pid {pid} is another process now (started {_utc(started)})"
    return None


def _utc(unix_s: float) -> str:
    return datetime.fromtimestamp(unix_s, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


class RunLock:
    """Context manager holding `<run_dir>/.lock` (a local path or a `RemotePath`)."""

    def __init__(self, run_dir: Path | RemotePath, heartbeat_s: float = HEARTBEAT_S,
                 settle_s: float = SETTLE_S):
        self.run_dir = run_dir if isinstance(run_dir, RemotePath) else Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.heartbeat_s, self.settle_s = heartbeat_s, settle_s
        self.holder: LockHolder | None = None
        self.lost: str | None = None  # set when the heartbeat finds another run's lock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._made_dir = False

    @property
    def remote(self) -> bool:
        return isinstance(self.path, RemotePath)

    def __enter__(self) -> "RunLock":
        self._make_dir()
        mine = LockHolder.me(self.heartbeat_s)
        (self._acquire_remote if self.remote else self._acquire_local)(mine)
        self.holder = mine
        self._thread = threading.Thread(target=self._heartbeat, daemon=True,
                                        name=f"raysweep-runlock-{self.run_dir.name}")
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.heartbeat_s + 5)
        if self.holder is not None and self._current_token() == self.holder.token:
            self.path.unlink(missing_ok=True)
        self.holder = None
        if self._made_dir and not self.remote:
            try:
                self.run_dir.rmdir()  # a run that wrote nothing leaves no folder behind
            except OSError:
                pass

    # --- taking the lock ---

    def _make_dir(self) -> None:
        try:
            self._made_dir = not self.remote and not self.run_dir.is_dir()
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StudyError(f"storage path {str(self.run_dir)!r} is not writable: "
                             f"{exc.strerror or exc}") from None

    def _acquire_local(self, mine: LockHolder) -> None:
        # Each round creates the lock, is refused, or removes one stale lock; more rounds
        # than a few means other runs keep taking it over at the same moment.
        for _ in range(5):
            if _create_exclusive(self.path, mine.to_json()):
                return
            holder = self._read_settled()
            if holder is None:
                continue  # released between our create and our read
            self._refuse_unless_gone(holder)
            self._remove_stale(holder)
        raise RunLockedError(f"run folder {self.run_dir} is being taken over by other runs "
                             "right now; try again in a few seconds")

    def _acquire_remote(self, mine: LockHolder) -> None:
        holder = self._read_settled() if self.path.is_file() else None
        if holder is not None:
            self._refuse_unless_gone(holder)
            self._warn_takeover(holder)
        self.path.write_text(mine.to_json())
        time.sleep(self.settle_s)  # let a concurrent writer's object land before reading back
        back = self._read()
        if back is None or back.token != mine.token:
            self._refuse_unless_gone(back or holder)
            raise RunLockedError(f"run folder {self.run_dir} changed hands while this run "
                                 "took it; try again")

    def _refuse_unless_gone(self, holder: LockHolder | None) -> None:
        if holder is not None and holder.gone() is None:
            raise RunLockedError(
                f"run folder {self.run_dir} is in use by another raysweep run "
                f"({holder.describe()}); wait for it to finish or choose another --name")

    def _remove_stale(self, stale: LockHolder) -> None:
        """Remove `.lock` if it is still `stale`, holding the takeover guard: two runs that
        found the same stale lock cannot both remove it (the second would remove the lock
        the first just created)."""
        guard = self.path.parent / TAKEOVER_NAME
        deadline = time.monotonic() + TAKEOVER_STALE_S
        while not _create_exclusive(guard, f"{os.getpid()}\n"):
            if _age_s(guard) > TAKEOVER_STALE_S:
                guard.unlink(missing_ok=True)  # left by a run that died mid-takeover
            elif time.monotonic() > deadline:
                return
            time.sleep(0.05)  # another run is taking over (milliseconds); poll its guard
        try:
            current = self._read()
            still = current is None if stale is UNREADABLE else (
                current is not None and current.token == stale.token)
            if still and self.path.is_file():
                self._warn_takeover(stale)
                self.path.unlink(missing_ok=True)
        finally:
            guard.unlink(missing_ok=True)

    def _warn_takeover(self, stale: LockHolder) -> None:
        why = "" if stale is UNREADABLE else " (the run that held it was killed or lost its host)"
        warnings.warn(f"run folder {self.run_dir}: taking over a stale lock: "
                      f"{stale.describe()}; {stale.gone()}{why}", StaleLockWarning, stacklevel=4)

    # --- reading the lock ---

    def _read(self) -> LockHolder | None:
        try:
            return LockHolder.from_json(self.path.read_text())
        except (OSError, UnicodeDecodeError):
            return None

    def _read_settled(self) -> LockHolder | None:
        """The holder; an unreadable lock gets a second look (a filesystem without hard
        links shows a lock before its content is written) and then counts as gone."""
        holder = self._read()
        if holder is None and self.path.is_file():
            time.sleep(1.0)
            holder = self._read()
            if holder is None and self.path.is_file():
                holder = UNREADABLE
        return holder

    def _current_token(self) -> str | None:
        holder = self._read()
        return holder.token if holder else None

    # --- the heartbeat ---

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            token = self._current_token()
            if token != self.holder.token:
                other = self._read()
                self.lost = (f"run folder {self.run_dir}: this run's lock was "
                             + (f"replaced by another run's ({other.describe()})" if other
                                else "removed") + "; two runs may now write this folder")
                warnings.warn(self.lost, StaleLockWarning, stacklevel=1)
                return
            self.holder = self.holder.beat()
            try:
                atomic_write_text(self.path, self.holder.to_json())
            except OSError as exc:  # a storage hiccup: the next beat tries again
                warnings.warn(f"run folder {self.run_dir}: lock heartbeat failed: {exc}",
                              StaleLockWarning, stacklevel=1)


# A lock file that cannot be parsed (damaged, or another lock version): stale.
UNREADABLE = LockHolder("", 0, None, 0.0, 0.0, 0.0, 0.0, "")


def _create_exclusive(path: Path | RemotePath, text: str) -> bool:
    """Create `path` holding `text` unless it exists; False if it does. Atomic with its
    content: a temp file is hard-linked to `path` (link fails if `path` exists)."""
    tmp = path.parent / f"{path.name}.{uuid.uuid4().hex}.tmp"
    tmp.write_text(text)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV,
                             errno.EMLINK):
            raise
        return _create_o_excl(path, text)
    finally:
        tmp.unlink(missing_ok=True)


def _create_o_excl(path: Path, text: str) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    return True


def _age_s(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0
