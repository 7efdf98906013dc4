"""Write results so that a crash or a full disk never leaves a half-written .h5ad behind."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from anndata import AnnData


def write_h5ad(adata: AnnData, path: str | Path) -> Path:
    """Write ``adata`` to ``path`` atomically and return the path.

    The file is written next to the target (same file system, so ``os.replace`` is atomic) under a
    temporary name matching ``*.h5ad.tmp*``; it replaces ``path`` only once complete, and is removed if
    writing fails. Missing parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        adata.write_h5ad(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
