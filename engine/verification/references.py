"""PyTorch's outputs on the check set, stored in the artifact so it can be verified torch-free.

At export the task exporter runs PyTorch on the check set and writes ``references.npz`` (NumPy
only, no pickles: ``np.load(..., allow_pickle=False)`` reads it anywhere NumPy runs). It is listed
and hashed in the manifest like every other file. ``onnx-engine verify`` and ``auto`` (on a machine
the variants were not checked on) re-run every variant against it.

What each task stores, and why it stays small:
- text-classification: the check-set texts and their logits, each text alone, and the short
  texts' logits in one padded batch (texts x classes floats: under 1 KB for a 2-label model).
- text2text-generation: the sources, PyTorch's greedy token ids (``GREEDY_TOKENS`` at most), each
  sequence's score (sum of its token log-probabilities), and, teacher-forced along that path, per
  step the log-probability of the reference token, the log-sum-exp of the logits and the top
  ``TOP_K`` logits with their ids: never the vocabulary (32k floats per step for t5-small).
- feature-extraction: the check set, retrieval documents and queries and their embeddings.
Full size: distilbert-base (268 MB fp32) stores 2.3 KB (measured); t5-small (~230 MB of fp32
graphs) ~9 KB (6 sources x 16 steps, as the tiny T5's 8.4 KB); all-MiniLM-L6-v2 (90 MB) 48 texts
x 384 floats ~75 KB: each far under the 5% the issue allows (under 0.1%).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from engine.errors import CorruptArtifactError

REFERENCES_NAME = "references.npz"
FORMAT_VERSION = 1
# Logits kept per decoder step: the reference's choice and its runners-up, which is what a flip
# margin needs; a variant's choice outside them is at least (top-1 - k-th) behind.
TOP_K = 8


def write_references(folder: Path, task: str, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write ``references.npz`` of ``task`` into ``folder`` (compressed, no pickled objects).

    Raises:
        OSError: the folder cannot be written.
        ValueError: an array holds Python objects (it could not be read back without pickle).
    """
    data = {"task": np.array(task), "format_version": np.array(FORMAT_VERSION)}
    for name, value in arrays.items():
        array = np.asarray(value)
        if array.dtype == object:
            raise ValueError(f"reference array '{name}' holds Python objects; store numbers/text.")
        data[name] = array
    path = Path(folder) / REFERENCES_NAME
    buffer = io.BytesIO()
    # numpy's stub types **kwds so that a key could be allow_pickle (a bool): a stub limit.
    np.savez_compressed(buffer, **data)  # type: ignore[arg-type]
    path.write_bytes(buffer.getvalue())
    return path


def read_references(path: Path, task: str) -> dict[str, np.ndarray]:
    """The arrays of a ``references.npz``, checked to be of ``task`` and this format.

    Raises:
        CorruptArtifactError: the file is not a readable npz of this format and task.
    """
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise CorruptArtifactError(
            f"{path} cannot be read ({error}). Re-export the artifact to rewrite it."
        ) from error
    found_task = str(arrays.get("task", ""))
    version = int(arrays["format_version"]) if "format_version" in arrays else None
    if version != FORMAT_VERSION or found_task != task:
        raise CorruptArtifactError(
            f"{path} holds format {version} references of '{found_task}'; this engine reads "
            f"format {FORMAT_VERSION} of '{task}'. Re-export the artifact."
        )
    return arrays


def topk_rows(logits: np.ndarray, k: int = TOP_K) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest values of each row of ``[..., vocab]`` logits, largest first, and their
    ids (ties keep the lower id first, as argmax does)."""
    k = min(k, logits.shape[-1])
    ids = np.argsort(-logits, axis=-1, kind="stable")[..., :k]
    return np.take_along_axis(logits, ids, axis=-1), ids


def logsumexp(logits: np.ndarray) -> np.ndarray:
    """log(sum(exp(x))) over the last axis, in float64, without overflow."""
    values = np.asarray(logits, dtype=np.float64)
    top = np.max(values, axis=-1, keepdims=True)
    return (top + np.log(np.sum(np.exp(values - top), axis=-1, keepdims=True)))[..., 0]
