"""The artifact manifest: what an exported folder contains and how it was checked.

The manifest makes an artifact self-describing: the engine learns the task, the graphs and their
input/output signatures, the maximum sequence length and each file's checksum from it, without
importing anything that created the artifact.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import ArtifactNotFoundError, CorruptArtifactError

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1

TASK_CLASSIFICATION = "text-classification"
TASK_TEXT2TEXT = "text2text-generation"


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
class ArtifactManifest:
    """Everything the engine needs to know about an artifact folder.

    ``graphs`` maps a role (``model`` for a classifier; ``encoder``, ``decoder``,
    ``decoder_with_past`` for seq2seq) to the fp32 graph. ``variants`` holds optimized versions of
    those graphs with their accuracy gates. ``tokenizer`` holds the padding token the model was
    trained with. ``parity`` is the export-time comparison with PyTorch.
    """

    task: str
    source_model: str
    engine_version: str
    opset: int
    max_length: int
    graphs: dict[str, GraphSpec]
    files: dict[str, FileRecord]
    tokenizer: dict[str, Any] = field(default_factory=dict)
    parity: dict[str, Any] = field(default_factory=dict)
    generation: dict[str, Any] = field(default_factory=dict)
    variants: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    def write(self, folder: Path) -> Path:
        path = Path(folder) / MANIFEST_NAME
        path.write_text(self.to_json() + "\n", encoding="utf-8")
        return path

    @classmethod
    def read(cls, folder: Path) -> ArtifactManifest:
        """Read ``manifest.json`` from an artifact folder.

        Raises:
            ArtifactNotFoundError: the folder or its manifest does not exist.
            CorruptArtifactError: the manifest is not valid JSON or lacks required fields.
        """
        folder = Path(folder)
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
            return cls.from_dict(data)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise CorruptArtifactError(
                f"{path} is corrupt ({type(error).__name__}: {error}). Re-export the artifact."
            ) from error

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArtifactManifest:
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"format_version {version!r}, this engine reads {FORMAT_VERSION}")
        graphs = {role: _graph_from_dict(spec) for role, spec in data["graphs"].items()}
        files = {name: FileRecord(**record) for name, record in data["files"].items()}
        return cls(
            task=data["task"],
            source_model=data["source_model"],
            engine_version=data["engine_version"],
            opset=int(data["opset"]),
            max_length=int(data["max_length"]),
            graphs=graphs,
            files=files,
            tokenizer=data.get("tokenizer", {}),
            parity=data.get("parity", {}),
            generation=data.get("generation", {}),
            variants=data.get("variants", {}),
            format_version=version,
        )


def _graph_from_dict(data: dict[str, Any]) -> GraphSpec:
    def specs(items: list[dict[str, Any]]) -> tuple[TensorSpec, ...]:
        return tuple(TensorSpec(item["name"], item["dtype"], tuple(item["shape"])) for item in items)

    return GraphSpec(file=data["file"], inputs=specs(data["inputs"]), outputs=specs(data["outputs"]))
