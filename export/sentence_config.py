"""Read a sentence-transformers model folder: which modules it chains and how it pools.

Only the JSON files are read (``modules.json``, ``1_Pooling/config.json``,
``sentence_bert_config.json``, ``config_sentence_transformers.json``), so what the engine will do
is decided from the files themselves; the export's parity check against ``SentenceTransformer``
then proves the reading right. A pipeline with modules the engine does not run (Dense, LayerNorm,
static word embeddings, routers) is refused by name instead of being exported without them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.pooling import POOLING_MODES, PoolingConfig
from export.errors import ExportError

MODULES_FILE = "modules.json"
SUPPORTED_MODULES = ("Transformer", "Pooling", "Normalize")
# The legacy boolean keys of 1_Pooling/config.json, in the order sentence-transformers
# concatenates the modes they switch on.
_LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}


@dataclass(frozen=True)
class SentenceModelConfig:
    """What the engine needs from a sentence-transformers folder."""

    pooling: PoolingConfig
    max_seq_length: int | None


def is_sentence_transformers_folder(model: str) -> bool:
    return (Path(model) / MODULES_FILE).is_file()


def read_sentence_config(folder: Path) -> SentenceModelConfig:
    """Pooling, normalization, similarity and maximum length of a sentence-transformers folder.

    Raises:
        ExportError: a file is unreadable, a module is not Transformer -> Pooling [-> Normalize],
            or the pooling uses a mode or option the engine does not implement.
    """
    folder = Path(folder)
    modules = [_module_kind(entry) for entry in _read_json(folder / MODULES_FILE)]
    kinds = [kind for kind, _ in modules]
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        unsupported = [kind for kind in kinds if kind not in SUPPORTED_MODULES]
        raise ExportError(
            f"'{folder}' chains the modules {kinds}; the engine runs Transformer -> Pooling "
            f"[-> Normalize] only"
            + (f" ({', '.join(unsupported)} not supported)." if unsupported else ".")
        )
    if modules[0][1] not in ("", "."):
        raise ExportError(
            f"'{folder}' keeps its transformer in the subfolder '{modules[0][1]}' (an old "
            f"sentence-transformers layout). Export '{folder / modules[0][1]}' as a plain encoder "
            "with --pooling and, if modules.json lists Normalize, --normalize."
        )
    pooling_path = folder / modules[1][1] / "config.json"
    pooling = _read_json(pooling_path)
    if pooling.get("include_prompt", True) is False:
        raise ExportError(
            f"{pooling_path}: include_prompt=false (prompt tokens left out of the pooling) is not "
            "supported by the engine."
        )
    options = _read_json(folder / "config_sentence_transformers.json", missing_ok=True)
    if options.get("default_prompt_name"):
        raise ExportError(
            f"'{folder}' prepends the prompt '{options['default_prompt_name']}' to every text by "
            "default; the engine does not apply prompts. Export a model without a default prompt."
        )
    try:
        config = PoolingConfig(
            modes=_pooling_modes(pooling),
            normalize=kinds[-1] == "Normalize",
            similarity=options.get("similarity_fn_name") or "cosine",
            token_dimension=int(
                pooling.get("embedding_dimension") or pooling["word_embedding_dimension"]
            ),
            source="sentence-transformers",
        )
    except (KeyError, ValueError) as error:
        raise ExportError(f"{pooling_path} cannot be used: {error}") from error
    transformer = _read_json(folder / "sentence_bert_config.json", missing_ok=True)
    length = transformer.get("max_seq_length")
    return SentenceModelConfig(config, int(length) if length else None)


def _module_kind(entry: dict[str, Any]) -> tuple[str, str]:
    """(class name, folder) of one ``modules.json`` entry; the class name is the last part of
    its type, which moved between packages across sentence-transformers versions."""
    return str(entry.get("type", "")).rsplit(".", 1)[-1], str(entry.get("path", ""))


def _pooling_modes(pooling: dict[str, Any]) -> tuple[str, ...]:
    """Modes from the current ``pooling_mode`` key or the legacy ``pooling_mode_*`` booleans."""
    if "pooling_mode" in pooling:
        mode = pooling["pooling_mode"]
        modes = (mode,) if isinstance(mode, str) else tuple(mode)
    else:
        modes = tuple(mode for key, mode in _LEGACY_POOLING_KEYS.items() if pooling.get(key))
    unknown = [mode for mode in modes if mode not in POOLING_MODES]
    if unknown or not modes:
        raise ValueError(f"pooling modes {list(modes)}, the engine implements {POOLING_MODES}")
    return modes


def _read_json(path: Path, missing_ok: bool = False) -> Any:
    if not path.is_file():
        if missing_ok:
            return {}
        raise ExportError(f"'{path}' is missing: the sentence-transformers folder is incomplete.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ExportError(f"'{path}' is not valid JSON: {error}") from error
