"""Errors of the export side, under the same base class as the engine's."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from engine.errors import OnnxEngineError


class ExportError(OnnxEngineError):
    """An export could not be made (unsupported model, exporter failure)."""


class OutputExistsError(ExportError):
    """The output folder exists and ``force`` was not given: exports never clobber silently."""


class ArtifactWriteError(ExportError):
    """Writing into an artifact folder failed (a full disk, a read-only folder): an I/O error,
    never a gate verdict; the artifact was left as it was."""

    @classmethod
    def from_os_error(cls, error: OSError, folder: Path) -> ArtifactWriteError:
        """One line naming the path and what the errno means, e.g. 'No space left on device'."""
        path = error.filename or folder
        meaning = os.strerror(error.errno) if error.errno else str(error)
        code = errno.errorcode.get(error.errno or 0, "")
        return cls(
            f"Cannot write '{path}': {meaning}{f' ({code})' if code else ''}. "
            f"The artifact '{folder}' was left as it was; free space or make the folder "
            "writable and run again."
        )
