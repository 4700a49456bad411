"""The top layer's task table and the server settings declared once (no models loaded)."""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import pytest

from engine.errors import InputError, TaskMismatchError
from onnx_engine.bench.contenders.base import Contender
from onnx_engine.serving.config import ServeConfig
from onnx_engine.serving.ray_scaling import RayScaling
from onnx_engine.serving.settings import from_arguments, from_strings, setting_keys
from onnx_engine.serving.tasks.answers import TaskAnswers
from onnx_engine.serving.tasks.base import TaskHandler
from onnx_engine.tasks import TASKS, app_task


@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_entry_resolves_to_its_tasks_pieces(task):
    entry = TASKS[task]
    assert issubclass(entry.handler_class(), TaskHandler) and entry.handler_class().task == task
    assert issubclass(entry.answers_class(), TaskAnswers)
    contenders = entry.contender_classes()
    assert contenders and all(issubclass(cls, Contender) for cls in contenders)
    assert len({cls.name for cls in contenders}) == len(contenders)
    assert entry.torch_reference in {cls.name for cls in contenders}
    assert entry.commands
    assert all(callable(module.routes) for module in entry.route_modules())


def test_cli_registers_every_tasks_commands():
    from onnx_engine.cli import build_parser

    (commands,) = [action.choices for action in build_parser()._actions
                   if isinstance(action, argparse._SubParsersAction)]
    for entry in TASKS.values():
        assert set(entry.commands) <= set(commands)


def test_unknown_task_is_refused_with_the_known_ones():
    with pytest.raises(TaskMismatchError, match="cannot serve a 'nope' model; it serves "
                       + ", ".join(sorted(TASKS))):
        app_task("nope", "serve")


def _serve_args(*flags: str) -> argparse.Namespace:
    from onnx_engine.cli import build_parser

    return build_parser().parse_args(["serve", "clf=/x", *flags])


def test_serve_flags_default_to_the_dataclasses_defaults():
    args = _serve_args()
    assert from_arguments(ServeConfig, args) == ServeConfig()
    assert from_arguments(RayScaling, args) == RayScaling()


def test_cli_flags_and_serve_run_strings_make_the_same_settings():
    flags = _serve_args("--max-batch-size", "16", "--cors-origin", "https://a",
                        "--cors-origin", "https://b", "--log-requests", "--max-input-chars",
                        "500", "--autoscale", "1:3", "--ray-num-cpus-per-replica", "2")
    strings = {"max_batch_size": "16", "cors_origins": "https://a,https://b",
               "log_requests": "true", "max_input_chars": "500", "autoscale": "1:3",
               "num_cpus_per_replica": "2"}
    config = from_strings(ServeConfig, {k: v for k, v in strings.items()
                                        if k in setting_keys(ServeConfig)})
    scaling = from_strings(RayScaling, {k: v for k, v in strings.items()
                                        if k in setting_keys(RayScaling)})
    assert config == from_arguments(ServeConfig, flags)
    assert config.cors_origins == ("https://a", "https://b") and config.max_batch_size == 16
    assert scaling == from_arguments(RayScaling, flags)
    assert scaling.autoscale == (1, 3) and scaling.num_cpus == 2.0


def test_every_setting_is_a_serve_run_key():
    keys = setting_keys(ServeConfig)
    assert sorted(keys.values()) == sorted(f.name for f in dataclasses.fields(ServeConfig))
    assert setting_keys(RayScaling)["num_cpus_per_replica"] == "num_cpus"


@pytest.mark.parametrize("values, message", [
    ({"max_input_chars": "none"}, None),
    ({"max_input_chars": "0"}, "max_input_chars must be a positive integer, got 0."),
    ({"max_queue_delay_ms": "-1"}, "max_queue_delay_ms must be >= 0, got -1.0."),
    ({"log_requests": "maybe"}, "log_requests must be true or false, got 'maybe'."),
    ({"api_key": " "}, "The API key is empty"),
])
def test_serve_run_strings_are_checked_by_their_kind(values, message):
    if message is None:
        assert from_strings(ServeConfig, values).max_input_chars is None
        return
    with pytest.raises(InputError) as error:
        from_strings(ServeConfig, values)
    assert message in str(error.value)


def test_task_answers_compare_with_the_tasks_tolerance():
    classification = app_task("text-classification").answers_class()()
    assert classification.matches(("POSITIVE", 0.50005), ("POSITIVE", 0.5))
    assert not classification.matches(("POSITIVE", 0.501), ("POSITIVE", 0.5))
    assert not classification.matches(("NEGATIVE", 0.5), ("POSITIVE", 0.5))
    embedding = app_task("feature-extraction").answers_class()()
    vector = np.array([1.0, 0.0], dtype=np.float32)
    assert embedding.matches(np.array([1.0, 0.01], dtype=np.float32), vector)
    assert not embedding.matches(np.array([0.0, 1.0], dtype=np.float32), vector)
    assert not embedding.matches(np.array([np.nan, 0.0], dtype=np.float32), vector)
