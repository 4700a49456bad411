"""The artifact manifest: what an exported folder contains and how it was checked.

The manifest makes an artifact self-describing: the engine learns the task, the graphs and their
input/output signatures, the maximum sequence length and each file's checksum from it, without
importing anything that created the artifact.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.checks import check_int
from engine.errors import ArtifactNotFoundError, CorruptArtifactError
from engine.variants.records import FP32, VariantRecord

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1

TASK_CLASSIFICATION = "text-classification"
TASK_TEXT2TEXT = "text2text-generation"
TASK_FEATURE_EXTRACTION = "feature-extraction"
FP32_VARIANT = FP32  # the export's own graphs; its manifest entry holds only their speeds


@dataclass(frozen=True)
class TensorSpec:
    """Name, element type and symbolic shape of one graph input or output."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]


@dataclass(frozen=True)
class GraphSpec:
    """One ONNX file of the artifact and its signature (e.g. role ``model`` or ``encoder``)."""

    file: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.outputs)


@dataclass(frozen=True)
class FileRecord:
    """Size and sha256 of one artifact file, recorded at export to detect later changes."""

    sha256: str
    size: int


@dataclass(frozen=True)
class TokenizerSpec:
    """The padding token the model was trained with (``tokenizer.json`` may not say)."""

    pad_id: int
    pad_token: str


@dataclass(frozen=True)
class ArtifactManifest:
    """Everything the engine needs to know about an artifact folder, parsed and checked once.

    ``graphs`` maps a role (``model`` for a classifier; ``encoder``, ``decoder``,
    ``decoder_with_past`` for seq2seq) to the fp32 graph. ``variants`` holds optimized versions of
    those graphs with their accuracy gates. ``tokenizer`` holds the padding token. ``parity`` is
    the export-time comparison with PyTorch (a report with ``passed``; empty while an export is
    still being checked). ``generation`` holds seq2seq token ids and limits.
    """

    task: str
    source_model: str
    engine_version: str
    opset: int
    max_length: int
    graphs: dict[str, GraphSpec]
    files: dict[str, FileRecord]
    tokenizer: TokenizerSpec
    parity: dict[str, Any] = field(default_factory=dict)
    generation: dict[str, Any] = field(default_factory=dict)
    variants: dict[str, VariantRecord] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def variant_only_files(self) -> dict[str, str]:
        """Each file only an optimized variant uses (with its external-data side file), mapped
        to that variant; the export's own graphs, tokenizer and config are not among them."""
        exported = {spec.file for spec in self.graphs.values()}
        owners: dict[str, str] = {}
        for name, record in self.variants.items():
            for graph in record.graphs.values():
                for file in (graph, f"{graph}_data"):
                    if file not in exported and file in self.files:
                        owners.setdefault(file, name)
        return owners

    @property
    def parity_passed(self) -> bool:
        """Whether the export's parity check against PyTorch ran and passed."""
        return self.parity.get("passed") is True

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["variants"] = {name: record.to_dict() for name, record in self.variants.items()}
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def write(self, folder: Path) -> Path:
        """Write ``manifest.json`` atomically: a reader sees the old manifest or the new one.

        The JSON goes to a temporary file in the same folder, is flushed to disk, then renamed
        over the manifest; a failed write (a full disk, a read-only folder) removes the
        temporary file and leaves the old manifest as it was.

        Raises:
            OSError: the folder cannot be written (the caller words it for its user).
        """
        path = Path(folder) / MANIFEST_NAME
        descriptor, temporary = tempfile.mkstemp(prefix=f".{MANIFEST_NAME}.", dir=path.parent)
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write((self.to_json() + "\n").encode("utf-8"))
                file.flush()
                os.fsync(file.fileno())
            os.chmod(temporary, 0o644)  # mkstemp makes it private; an artifact is shared
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def read(cls, folder: Path) -> ArtifactManifest:
        """Read and check ``manifest.json`` of an artifact folder.

        Raises:
            ArtifactNotFoundError: the folder or its manifest does not exist, or the path is a
                file (an artifact is a folder).
            CorruptArtifactError: the manifest is not valid UTF-8 JSON, or a field is missing or
                of the wrong shape (the message names the field).
        """
        folder = Path(folder)
        if folder.is_file():
            in_artifact = (folder.parent / MANIFEST_NAME).is_file()
            hint = (f"give the artifact folder that holds it, '{folder.parent}'" if in_artifact else
                    "give the folder that 'onnx-engine export MODEL FOLDER' wrote (it holds "
                    f"{MANIFEST_NAME} and the .onnx files)")
            raise ArtifactNotFoundError(
                f"'{folder}' is a file, but an artifact is a folder: {hint}."
            )
        if not folder.is_dir():
            raise ArtifactNotFoundError(
                f"Artifact folder '{folder}' does not exist. Create one with "
                f"'onnx-engine export MODEL {folder}'."
            )
        path = folder / MANIFEST_NAME
        if not path.is_file():
            raise ArtifactNotFoundError(
                f"'{folder}' has no {MANIFEST_NAME}: it is not an onnx-engine artifact (or its "
                f"export did not finish). Re-run 'onnx-engine export MODEL {folder} --force'."
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise CorruptArtifactError(
                f"{path} is not valid JSON ({error}). Re-export the artifact."
            ) from error
        try:
            return cls.from_dict(data)
        except CorruptArtifactError as error:
            raise CorruptArtifactError(f"{path}: {error} Re-export the artifact.") from error

    @classmethod
    def from_dict(cls, data: object) -> ArtifactManifest:
        """Build the typed manifest from parsed JSON, checking every field's shape.

        Raises:
            CorruptArtifactError: a field is missing or of the wrong type (named in the message).
        """
        data = _mapping(data, "the manifest")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise CorruptArtifactError(
                f"format_version is {version!r}; this engine reads {FORMAT_VERSION}."
            )
        graphs = {
            _text(role, "a graph role"): _graph_from_dict(spec, f"graphs.{role}")
            for role, spec in _mapping(_required(data, "graphs"), "graphs").items()
        }
        if not graphs:
            raise CorruptArtifactError("field 'graphs' is empty: the artifact lists no ONNX graph.")
        files = {
            _text(name, "a file name"): _file_record(record, f"files.{name}")
            for name, record in _mapping(_required(data, "files"), "files").items()
        }
        tokenizer = _mapping(_required(data, "tokenizer"), "tokenizer")
        variants = _mapping(data.get("variants", {}), "variants")
        return cls(
            task=_text(_required(data, "task"), "task"),
            source_model=_text(_required(data, "source_model"), "source_model"),
            engine_version=_text(_required(data, "engine_version"), "engine_version"),
            opset=_integer(_required(data, "opset"), "opset"),
            max_length=_integer(_required(data, "max_length"), "max_length", minimum=1),
            graphs=graphs,
            files=files,
            tokenizer=TokenizerSpec(
                pad_id=_integer(_required(tokenizer, "pad_id", "tokenizer"), "tokenizer.pad_id"),
                pad_token=_text(
                    _required(tokenizer, "pad_token", "tokenizer"), "tokenizer.pad_token"
                ),
            ),
            parity=_mapping(data.get("parity", {}), "parity"),
            generation=_mapping(data.get("generation", {}), "generation"),
            variants={
                _text(name, "a variant name"): _variant(name, record, graphs)
                for name, record in variants.items()
            },
            format_version=version,
        )


def _variant(name: str, data: object, graphs: dict[str, GraphSpec]) -> VariantRecord:
    """One ``variants`` entry; the fp32 entry only stores speeds, its graphs are the export's."""
    if name == FP32_VARIANT and isinstance(data, dict) and "graphs" not in data:
        data = {**data, "graphs": {role: spec.file for role, spec in graphs.items()}}
    return VariantRecord.from_dict(name, data)


def _graph_from_dict(data: object, where: str) -> GraphSpec:
    data = _mapping(data, where)

    def specs(key: str) -> tuple[TensorSpec, ...]:
        items = _required(data, key, where)
        if not isinstance(items, list):
            raise CorruptArtifactError(f"field '{where}.{key}' must be a list of tensor specs.")
        result = []
        for index, item in enumerate(items):
            item = _mapping(item, f"{where}.{key}[{index}]")
            shape = _required(item, "shape", f"{where}.{key}[{index}]")
            if not isinstance(shape, list):
                raise CorruptArtifactError(f"field '{where}.{key}[{index}].shape' must be a list.")
            result.append(TensorSpec(
                _text(_required(item, "name", where), f"{where}.{key}[{index}].name"),
                _text(_required(item, "dtype", where), f"{where}.{key}[{index}].dtype"),
                tuple(shape),
            ))
        return tuple(result)

    return GraphSpec(
        file=_text(_required(data, "file", where), f"{where}.file"),
        inputs=specs("inputs"),
        outputs=specs("outputs"),
    )


def _file_record(data: object, where: str) -> FileRecord:
    data = _mapping(data, where)
    return FileRecord(
        sha256=_text(_required(data, "sha256", where), f"{where}.sha256"),
        size=_integer(_required(data, "size", where), f"{where}.size"),
    )


def _required(data: dict[str, Any], key: str, where: str = "") -> Any:
    if key not in data:
        name = f"{where}.{key}" if where else key
        raise CorruptArtifactError(f"required field '{name}' is missing.")
    return data[key]


def _mapping(value: object, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CorruptArtifactError(
            f"field '{name}' must be a JSON object, got {type(value).__name__} ({value!r:.40})."
        )
    return value


def _text(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise CorruptArtifactError(f"field '{name}' must be a string, got {value!r:.40}.")
    return value


def _integer(value: object, name: str, minimum: int = 0) -> int:
    return check_int(f"field '{name}'", value, minimum, f"an integer >= {minimum}",
                     error=CorruptArtifactError)
