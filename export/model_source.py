"""Where a model to export comes from (a local folder or a hub id), checked in a second, and
which task its config says it is for.

Left to transformers, a mistyped local path reads "Repo id must use alphanumeric chars", and a
hub id without a network retries for about a minute before failing. Here a missing folder says
so, ``HF_HUB_OFFLINE`` with an uncached id fails at once, and a hub id gets one quick request.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.manifest import TASK_FEATURE_EXTRACTION, TASK_TEXT2TEXT
from export.dependencies import require
from export.errors import ExportError
from export.sentence_config import MODULES_FILE
from export.tasks import EXPORT_TASKS

CONFIG_FILE = "config.json"
# One request to the hub, no retries: a user without a network hears it in seconds.
HUB_PROBE_TIMEOUT_S = 10.0


def check_model_source(model: str) -> None:
    """Refuse, with one line, a model that is neither a local folder nor reachable on the hub.

    A local folder passes (the loaders check what is in it); so does a hub id that is in the
    local cache or that the hub answers for.

    Raises:
        ExportError: a file, a path-like name whose folder does not exist, an uncached hub id
            under ``HF_HUB_OFFLINE``, an id the hub does not have, or no answer from the hub.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return
    if path.exists():
        raise ExportError(f"'{model}' is a file; give a checkpoint folder or a hub model id.")
    hub, errors = require("huggingface_hub"), require("huggingface_hub.errors")
    try:
        require("huggingface_hub.utils").validate_repo_id(model)
    except errors.HFValidationError:
        raise ExportError(
            f"The local folder '{model}' does not exist. Give the folder of a saved checkpoint "
            "(save_pretrained) or a Hugging Face hub id such as 'distilbert-base-uncased'."
        ) from None
    if isinstance(hub.try_to_load_from_cache(model, CONFIG_FILE), str):
        return
    if require("huggingface_hub.constants").HF_HUB_OFFLINE:
        raise ExportError(
            f"'{model}' is not a local folder and not in the Hugging Face cache, and "
            "HF_HUB_OFFLINE is set, so it cannot be downloaded. Give a local checkpoint folder, "
            "or unset HF_HUB_OFFLINE."
        )
    _probe_hub(model)


def _probe_hub(model: str) -> None:
    """One HEAD request for the model's config.json, without the library's retries."""
    hub, errors = require("huggingface_hub"), require("huggingface_hub.errors")
    utils = require("huggingface_hub.utils")
    try:
        response = utils.get_session().head(
            hub.hf_hub_url(model, CONFIG_FILE), headers=utils.build_hf_headers(),
            timeout=HUB_PROBE_TIMEOUT_S, allow_redirects=False,
        )
        utils.hf_raise_for_status(response)
    except (errors.RepositoryNotFoundError, errors.EntryNotFoundError):
        raise ExportError(
            f"'{model}' is neither a local folder nor a model on the Hugging Face hub (check "
            "the spelling; a private or gated model needs 'hf auth login')."
        ) from None
    except errors.HfHubHTTPError as error:
        message = f"The Hugging Face hub refused '{model}': {error}".splitlines()[0]
        raise ExportError(message) from None
    except OSError as error:  # requests' connection errors and timeouts are OSErrors
        raise ExportError(
            f"Cannot reach the Hugging Face hub for '{model}' ({type(error).__name__}). Check "
            "the network, or give a local checkpoint folder (HF_HUB_OFFLINE=1 uses cached "
            "models only)."
        ) from None


def infer_task(model: str) -> str:
    """The export task a model's files say, as ``optimum-cli`` infers it.

    The first task whose exporter claims the model's files (``TaskExporter.claims``: a saved
    ``CrossEncoder`` folder is ``text-ranking``); else a sentence-transformers folder
    (``modules.json``) is ``feature-extraction``; otherwise the
    first task whose exporter claims an architecture of the config (``TaskExporter.infers``:
    ``*ForSequenceClassification`` is ``text-classification``, an encoder-decoder
    ``*ForConditionalGeneration`` (T5) ``text2text-generation``, a bare encoder (``BertModel``)
    ``feature-extraction``); a config without architectures of model type ``t5`` is T5.

    Raises:
        ExportError: the config cannot be read, or names no task this exporter makes (the
            message names ``--task``).
    """
    for spec in EXPORT_TASKS.values():
        if spec.exporter.claims(model):
            return spec.task
    if _has_file(model, MODULES_FILE):
        return TASK_FEATURE_EXTRACTION
    config = _config(model)
    architectures = [str(name) for name in config.get("architectures") or []]
    for name in architectures:
        for spec in EXPORT_TASKS.values():
            if spec.exporter.infers(name, config):
                return spec.task
    if not architectures and config.get("model_type") == "t5":
        return TASK_TEXT2TEXT
    raise ExportError(
        f"Cannot tell the task of '{model}' from its config (architectures: "
        f"{architectures or 'none'}, model_type: {config.get('model_type')!r}). Pass --task "
        f"with one of: {', '.join(EXPORT_TASKS)}."
    )


def _has_file(model: str, name: str) -> bool:
    folder = Path(model).expanduser()
    if folder.is_dir():
        return (folder / name).is_file()
    hub = require("huggingface_hub")
    try:
        return hub.file_exists(model, name)
    except Exception:  # offline or refused: the config read below says what is wrong
        return isinstance(hub.try_to_load_from_cache(model, name), str)


def _config(model: str) -> dict[str, Any]:
    folder = Path(model).expanduser()
    try:
        if folder.is_dir():
            path = folder / CONFIG_FILE
        else:
            path = Path(require("huggingface_hub").hf_hub_download(model, CONFIG_FILE))
        data = json.loads(path.read_text(encoding="utf-8"))
    except Exception as error:  # missing, unreadable, not JSON, not downloadable
        raise ExportError(
            f"Cannot read the config.json of '{model}' to infer its task "
            f"({type(error).__name__}); pass --task with one of: {', '.join(EXPORT_TASKS)}."
        ) from None
    if not isinstance(data, dict):
        raise ExportError(f"The config.json of '{model}' is not a JSON object; pass --task.")
    return data
