"""Build an artifact in a staging folder and move it into place only when it passed its checks.

A failed export therefore never leaves a folder that looks like a valid artifact, and an existing
artifact is replaced only with ``force``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from export.errors import OutputExistsError


def check_output_free(output: Path, force: bool) -> None:
    if output.exists() and not force:
        raise OutputExistsError(
            f"'{output}' already exists. Pass force=True to replace it, or choose "
            "another output folder."
        )


# The old output, set aside while a forced export puts the new one in its place.
_REPLACED_SUFFIX = "-replaced"


def staging_prefix(output: Path) -> str:
    return f".{output.name}.staging-"


def remove_stale_staging(output: Path) -> list[Path]:
    """Delete staging folders of ``output`` left by exports that were killed before finishing.

    A staging folder is named after the process that made it (``.NAME.staging-PID-XXXX``), so
    one whose process is gone is stale, while a concurrent export's folder is left alone.
    Returns the folders removed.
    """
    removed = []
    for folder in output.parent.glob(staging_prefix(output) + "*"):
        owner = folder.name[len(staging_prefix(output)):].split("-", 1)[0]
        if folder.is_dir() and not (owner.isdigit() and _process_alive(int(owner))):
            if folder.name.endswith(_REPLACED_SUFFIX) and not output.exists():
                folder.rename(output)  # killed while replacing: the old artifact comes back
                continue
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


@contextmanager
def staged_output(output: Path, force: bool) -> Iterator[Path]:
    """Yield an empty staging folder next to ``output``; on success it replaces ``output``.

    Stale staging folders of earlier, killed exports of the same output are removed first.
    """
    output = Path(output).resolve()
    check_output_free(output, force)
    output.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(output)
    prefix = f"{staging_prefix(output)}{os.getpid()}-"
    staging = Path(tempfile.mkdtemp(prefix=prefix, dir=output.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; an artifact is meant to be shared
    try:
        yield staging
        _publish(staging, output, output.parent / f"{prefix.rstrip('-')}{_REPLACED_SUFFIX}")
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _publish(staging: Path, output: Path, replaced: Path) -> None:
    """Rename ``staging`` to ``output``; an existing ``output`` is set aside first and deleted
    only once the new one is in place, so a failed rename (or a kill: see
    :func:`remove_stale_staging`) never leaves the user with neither."""
    if output.exists():
        output.rename(replaced)
    try:
        staging.rename(output)
    except BaseException:
        if replaced.exists():
            replaced.rename(output)
        raise
    if replaced.is_dir():
        shutil.rmtree(replaced, ignore_errors=True)
    elif replaced.exists():
        replaced.unlink()


def flush_to_disk(path: Path) -> None:
    """fsync a written file, so a rename that publishes it never publishes a hole after a crash.

    Raises:
        OSError: the file cannot be opened or flushed (a full disk shows up here at the latest).
    """
    with open(path, "rb") as file:
        os.fsync(file.fileno())


def flush_folder(folder: Path) -> None:
    """fsync a folder, so the renames made in it survive a crash (POSIX; a no-op elsewhere)."""
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
