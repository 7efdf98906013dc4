"""Write results so that a crash or a full disk never leaves a half-written file behind."""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

import h5py
from anndata import AnnData
from anndata.io import write_elem

from tissuegraph.errors import InputError


def check_writable(path: str | Path, option: str = "the output") -> Path:
    """Refuse, before any work is spent, an output path whose folder cannot be created or written to."""
    path = Path(path)
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(
            f"{option} '{path}' cannot be written: '{folder}' is a file, not a folder; choose another path"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(
            f"{option} '{path}' cannot be written: no permission to write in '{folder}'; choose another path"
        )
    _probe(path, folder, option)
    name_bytes, name_max = len(os.fsencode(path.name)), _name_max(folder)
    if name_bytes > name_max:
        raise InputError(
            f"{option} '{path}' cannot be written: its file name is {name_bytes} bytes long and the file system "
            f"allows at most {name_max}; choose a shorter name"
        )
    return path


def _probe(path: Path, folder: Path, option: str) -> None:
    """Create and remove a file in ``folder``: permission bits pass folders that refuse new files anyway (a virtual
    file system such as /proc, network file systems whose bits do not tell), which would fail only after training."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".tissuegraph-probe-"):
            pass
    except OSError as err:
        raise InputError(
            f"{option} '{path}' cannot be written: a new file in '{folder}' was refused ({_reason(err)}); choose "
            "another path"
        ) from None


def _reason(err: OSError) -> str:
    """The system's words for an error, without the temporary or probe file's name that ``str(err)`` carries."""
    return os.strerror(err.errno) if err.errno else str(err)


def _name_max(folder: Path) -> int:
    """The longest file name the folder's file system takes, in bytes (255 where it does not say)."""
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return 255


def write_atomically(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then move it onto ``path``; return the path.

    The temporary file (``<name>.tmp-<random>``, same folder, so ``os.replace`` is atomic; a long name is cut
    so that the suffix still fits) is flushed to disk before it replaces ``path``, and removed if writing fails:
    ``path`` holds either its old content or the complete new one. Missing parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name[:_TMP_STEM]}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        write(tmp)
        with open(tmp, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    except OSError as err:  # name the file the user asked for, not the temporary one
        _remove(tmp)
        raise OSError(
            f"could not write '{path}': {_reason(err)}; check the disk space and the folder, or choose another path"
        ) from err
    except BaseException:
        _remove(tmp)
        raise
    return path


#: Characters of the target's name kept in the temporary name: 48 four-byte characters and the 13-character
#: suffix stay within the usual 255-byte limit.
_TMP_STEM = 48


def _remove(tmp: Path) -> None:
    """Remove a temporary file, quietly: the error that made the write fail is the one to report."""
    with contextlib.suppress(OSError):
        tmp.unlink(missing_ok=True)


def write_h5ad(adata: AnnData, path: str | Path) -> Path:
    """Write ``adata`` to ``path`` atomically (``write_atomically``) and return the path.

    The file is built in memory, then written with plain file I/O: HDF5 writing straight to a full disk crashes
    the whole process (a segfault, no Python error), a plain write fails with an error that can be reported.
    Strings in ``obs``/``var`` become categoricals, as ``AnnData.write_h5ad`` makes them.
    """

    def write(tmp: Path) -> None:
        image = io.BytesIO()
        adata.strings_to_categoricals()
        with h5py.File(image, "w") as store:
            write_elem(store, "/", adata)
        tmp.write_bytes(image.getbuffer())

    return write_atomically(path, write)
