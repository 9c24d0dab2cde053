"""Files the course kit writes: atomically, with the mode the umask gives."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: str | bytes) -> Path:
    """Write ``data`` (str as UTF-8) to ``path`` through a temporary file and a rename, so an
    interrupted write never leaves half a file; the mode is 0o666 less the umask, as ``open`` gives."""
    from .runner import TMP_TAG, new_file_mode

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}{TMP_TAG}", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(tmp, new_file_mode())  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def copy_files(src: Path, dst: Path) -> None:
    """Copy the tree ``src`` into ``dst`` with new files and folders made as the umask says
    (``shutil.copytree`` would give them the modes of the installed package's files)."""
    for item in sorted(Path(src).rglob("*")):
        target = Path(dst) / item.relative_to(src)
        if item.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif item.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)  # a new file: open() applies the umask
            shutil.copyfile(item, target)
