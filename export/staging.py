"""Build an artifact in a staging folder and move it into place only when it passed its checks.

A failed export therefore never leaves a folder that looks like a valid artifact, and an existing
artifact is replaced only with ``force``.
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from export.errors import OutputExistsError


def check_output_free(output: Path, force: bool) -> None:
    if output.exists() and not force:
        raise OutputExistsError(
            f"'{output}' already exists. Pass --force (force=True) to replace it, or choose "
            "another output folder."
        )


@contextmanager
def staged_output(output: Path, force: bool) -> Iterator[Path]:
    """Yield an empty staging folder next to ``output``; on success it replaces ``output``."""
    output = Path(output).resolve()
    check_output_free(output, force)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.staging-", dir=output.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; an artifact is meant to be shared
    try:
        yield staging
        if output.exists():
            shutil.rmtree(output) if output.is_dir() else output.unlink()
        staging.rename(output)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
