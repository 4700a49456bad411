"""Fixtures of the pytest-benchmark suites: full-size models, loaded contenders, workloads.

The models are the full-size built-ins of ``onnx-engine bench`` (distilbert-base and t5-small
dimensions, RANDOM weights), built and exported once into ``--bench-cache`` and reused by later
runs. Run with ``pytest benchmarks/ --benchmark-only``; they are not part of ``make test``.
"""

from __future__ import annotations

import os

# Before anything imports torch: its idle OpenMP threads would otherwise spin against ORT's.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from collections.abc import Callable
from pathlib import Path

import pytest

from onnx_engine.bench.contenders.base import Contender
from onnx_engine.bench.errors import ContenderUnavailable
from onnx_engine.bench.machine import physical_cores
from onnx_engine.bench.models import BenchTarget, resolve_target
from onnx_engine.bench.registry import contender_class, load_contender
from onnx_engine.bench.variants import FP32
from onnx_engine.bench.workloads import WorkloadFactory

NEW_TOKENS = 32


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("onnx-engine benchmarks")
    group.addoption("--bench-cache", default="artifacts/bench",
                    help="folder of the built full-size models (default artifacts/bench)")
    group.addoption("--bench-variants", default="fp32",
                    help="comma-separated variants for the engine, ort-raw and optimum")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "variant" in metafunc.fixturenames:
        variants = metafunc.config.getoption("--bench-variants").split(",")
        metafunc.parametrize("variant", [name.strip() for name in variants if name.strip()])


@pytest.fixture(scope="session")
def targets(pytestconfig: pytest.Config) -> Callable[[str], BenchTarget]:
    """Built-in model name -> its cached target (built on first use)."""
    cache_dir = Path(pytestconfig.getoption("--bench-cache"))
    resolved: dict[str, BenchTarget] = {}

    def get(name: str) -> BenchTarget:
        if name not in resolved:
            resolved[name] = resolve_target(name, cache_dir)
        return resolved[name]

    return get


@pytest.fixture(scope="session")
def loaded(targets) -> Callable[[str, str, str], Contender]:
    """(model, contender, variant) -> a loaded contender, loaded once per session; skips with
    the reason when it cannot run here (library missing, no checkpoint, variant not built)."""
    cache: dict[tuple[str, str, str], Contender] = {}

    def get(model: str, name: str, variant: str) -> Contender:
        key = (model, name, variant)
        if key not in cache:
            target = targets(model)
            if not contender_class(target.task, name).runs_variants and variant != FP32:
                pytest.skip(f"{name} runs the PyTorch fp32 model only (see the fp32 case)")
            try:
                cache[key] = load_contender(target, name, variant, physical_cores(), NEW_TOKENS)
            except ContenderUnavailable as error:
                pytest.skip(str(error))
        return cache[key]

    return get


@pytest.fixture(scope="session")
def texts(targets) -> Callable[[str, int, int], tuple[str, ...]]:
    """(model, batch, seq) -> texts of exactly ``seq`` tokens each."""

    def get(model: str, batch: int, seq: int) -> tuple[str, ...]:
        target = targets(model)
        factory = WorkloadFactory(target.artifact / "tokenizer.json", target.manifest.max_length)
        return factory.workload(batch, seq).texts

    return get


@pytest.fixture
def bench_contender(benchmark) -> Callable[[Contender, tuple[str, ...], str], None]:
    """Time ``contender.run`` on texts with pytest-benchmark, grouped for side-by-side tables."""

    def run(contender: Contender, texts: tuple[str, ...], group: str) -> None:
        contender.prepare(texts)
        benchmark.group = group
        benchmark.extra_info.update(contender=contender.name, variant=contender.settings.variant,
                                    threads=contender.settings.threads)
        benchmark.pedantic(contender.run, warmup_rounds=3, rounds=15, iterations=1)

    return run
