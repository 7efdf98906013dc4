"""Write results so that a crash or a full disk never leaves a half-written file behind."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

from anndata import AnnData

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
    return path


def write_atomically(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then move it onto ``path``; return the path.

    The temporary file (``<name>.tmp-<random>``, same folder, so ``os.replace`` is atomic) is flushed to disk
    before it replaces ``path``, and removed if writing fails: ``path`` holds either its old content or the
    complete new one. Missing parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        write(tmp)
        with open(tmp, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    except OSError as err:  # name the file the user asked for, not the temporary one
        tmp.unlink(missing_ok=True)
        reason = os.strerror(err.errno) if err.errno else str(err)
        raise OSError(
            f"could not write '{path}': {reason}; check the disk space and the folder, or choose another path"
        ) from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_h5ad(adata: AnnData, path: str | Path) -> Path:
    """Write ``adata`` to ``path`` atomically (``write_atomically``) and return the path."""
    return write_atomically(path, adata.write_h5ad)
