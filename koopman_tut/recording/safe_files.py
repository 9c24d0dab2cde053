"""Files created safely: through a temporary file beside the target, never through a symlink, modes from the umask.

Used for the recorder's disk files (:class:`koopman_tut.recording.storage.DiskStorage`) and
:meth:`koopman_tut.Trajectory.save`. A new file is created under a temporary name in the
target's folder (``O_CREAT | O_EXCL | O_NOFOLLOW``, mode 0o666 less the umask, as ``open``
gives), filled, and only then renamed onto the target, so an existing file is untouched
until its replacement is complete and a failure leaves neither a stub nor a damaged file.

A recorder holds an exclusive ``flock`` on its file for as long as it may write to it: a
second recorder on the same path is refused, and a reader tells a recording in progress
(locked) from one whose process died (unlocked, never closed). Without ``fcntl`` (not
POSIX) there are no locks.

:func:`unreadable_zip_entry` checks a file :meth:`koopman_tut.Trajectory.save` wrote before it is loaded.
"""
from __future__ import annotations

import errno
import os
import secrets
import stat
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK, errno.EXDEV}


def check_target(path, overwrite: bool) -> Path:
    """``path`` as a Path where a new file may go.

    Raises
    ------
    TypeError : path not a str or os.PathLike, overwrite not a bool.
    ValueError : path is a symbolic link (never followed, dangling or not) or not a regular file.
    FileExistsError : a file exists at path and ``overwrite`` is False.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {path!r} ({type(path).__name__})")
    if not isinstance(overwrite, bool):
        raise TypeError(f"overwrite must be True or False, got {overwrite!r} ({type(overwrite).__name__})")
    path = Path(path)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return path
    if stat.S_ISLNK(mode):
        raise ValueError(f"path {str(path)!r} is a symbolic link: links are never followed; give the path of "
                         f"the file itself")
    if not stat.S_ISREG(mode):
        raise ValueError(f"path {str(path)!r} exists and is not a regular file")
    if not overwrite:
        if being_written(path):  # overwrite=True would be refused too: say so now
            raise FileExistsError(errno.EEXIST, f"{path} is being written by another TrajectoryRecorder: choose "
                                                f"another path")
        raise FileExistsError(errno.EEXIST, f"{path} exists: pass overwrite=True to replace it (the old file stays "
                                            f"intact until the new one is allocated), or choose another path")
    return path


def being_written(path: Path) -> bool:
    """Whether a live TrajectoryRecorder holds ``path``'s lock (it is writing that file now). Opened without
    blocking: a named pipe (FIFO) at ``path`` would otherwise wait for a writer, for ever."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return False
    try:
        return is_locked(fd)
    finally:
        os.close(fd)


def create_temp(path: Path) -> tuple[int, Path]:
    """A new empty file beside ``path`` (same folder: the rename is atomic), opened read-write: (fd, its path)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | NOFOLLOW | CLOEXEC
    for _ in range(100):
        tmp = path.with_name(f".{path.name[:200]}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp  # the umask applies, as for open()
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"no free temporary name beside {path}")


def discard(fd: int | None, tmp: Path) -> None:
    """Close and remove an unfinished temporary file (errors ignored: the original error matters)."""
    try:
        if fd is not None:
            os.close(fd)
    except OSError:
        pass
    try:
        os.unlink(tmp)
    except OSError:
        pass


def publish(tmp: Path, path: Path, overwrite: bool) -> None:
    """Move the finished ``tmp`` onto ``path`` atomically: os.replace when overwriting, else a hard link
    that fails when ``path`` appeared meanwhile (FileExistsError; ``tmp`` is then left to the caller)."""
    if overwrite:
        os.replace(tmp, path)
    else:
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise FileExistsError(errno.EEXIST, f"{path} was created by someone else while this file was being "
                                                f"allocated: pass overwrite=True to replace it") from None
        except OSError as e:
            if e.errno not in _NO_HARD_LINKS or os.path.lexists(path):
                raise
            os.rename(tmp, path)  # a filesystem without hard links: checked just before
        else:
            os.unlink(tmp)
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (where the platform allows opening a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY | CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomically(path: str | os.PathLike, write: Callable[[object], None]) -> None:
    """Create ``path`` through a temporary file beside it: ``write(f)`` fills it, fsync, os.replace.

    An existing file at ``path`` (or a symlink, which is replaced, not followed) stays as it was
    until the new one is complete; the mode is 0o666 less the umask.
    """
    path = Path(path)
    fd, tmp = create_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            fd = None  # owned by f now
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        discard(fd, tmp)
        raise
    fsync_dir(path.parent)


def lock(fd: int, path: Path, tries: int = 20) -> None:
    """Take the writer's exclusive lock on ``fd``; FileExistsError when a recorder holds it.

    A reader checking for a live recorder holds a shared lock for microseconds: retried for
    at most ``tries`` x 5 ms before giving up.
    """
    if fcntl is None:
        return
    for i in range(tries):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if i + 1 < tries:
                time.sleep(0.005)
    raise FileExistsError(errno.EBUSY, f"{path} is being written by another TrajectoryRecorder (in this or another "
                                       f"process): call remove() on that recorder first, or record to another path")


def unlock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)


def claim_existing(path: Path) -> int | None:
    """An fd locking the file now at ``path`` (None if there is none), held while it is replaced so that
    no recorder starts on it meanwhile; FileExistsError when a recorder is writing it."""
    try:
        fd = os.open(path, os.O_RDONLY | NOFOLLOW | CLOEXEC | os.O_NONBLOCK)
    except (FileNotFoundError, PermissionError):  # nothing there, or unreadable (no recorder of ours writes it)
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ValueError(f"path {str(path)!r} is a symbolic link: links are never followed") from None
        raise
    try:
        lock(fd, path)
        now, held = os.lstat(path), os.fstat(fd)
        if (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino):
            raise FileExistsError(errno.EBUSY, f"{path} was replaced by someone else meanwhile: try again")
    except BaseException:
        os.close(fd)
        raise
    return fd


def is_locked(fd: int) -> bool:
    """Whether some writer (in any process, this one included) holds its lock on the file open as ``fd``."""
    if fcntl is None:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


def unreadable_zip_entry(path: Path) -> str | None:
    """The first entry of save()'s zip archive that cannot be read, or whose bytes fail their stored CRC-32
    (None: all pass; an entry stored with CRC 0, as torch writes with its CRC-32 turned off, is not read to
    the end; a zip whose directory cannot be read is left to torch.load to report). Any failure to read an
    entry counts, not only zipfile's BadZipFile: a flipped bit in an entry's local header (its name's length,
    say) makes zipfile fail otherwise (UnicodeDecodeError), while torch.load reads the data from a shifted offset.
    So does an entry marked a directory (DOS attribute 0x10, which torch never writes): torch's reader (miniz)
    extracts nothing from it and leaves the tensor's memory as it found it."""
    try:
        z = zipfile.ZipFile(path)
    except Exception:  # noqa: BLE001  (a damaged directory: torch.load's error names the file)
        return None
    with z:
        for info in z.infolist():
            if info.external_attr & 0x10:
                return info.filename
            try:
                with z.open(info) as f:  # reading to the end compares the CRC-32
                    while f.read(2**24) if info.CRC else False:
                        pass
            except Exception:  # noqa: BLE001  (any entry zipfile cannot read is damaged)
                return info.filename
    return None
