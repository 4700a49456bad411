"""Cold start: a fresh process that loads one contender and produces one result.

The parent notes the wall clock, starts ``python -m onnx_engine.bench.coldstart SPEC`` and the
child reports the wall clock at its first result, so the time includes the interpreter start and
every import, as a user's script or a serving container pays it. The child also reports its peak
resident memory (``getrusage``), which for one contender alone is only measurable in its own
process (see ``peak_rss_bytes``), and which heavy libraries it imported. The page cache is warm
(the files were read before), as on any machine that has started the model once.

This module must stay free of imports beyond the standard library: the child imports only it and
the one contender module it is told to.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

_WATCHED_MODULES = ("onnxruntime", "torch", "transformers", "optimum")


@dataclass(frozen=True)
class ColdStart:
    """One cold start: seconds from process start to first result, and peak RSS."""

    seconds: float
    peak_rss_bytes: int
    imported: tuple[str, ...]


def measure_cold_start(
    contender: type, settings: Any, texts: Sequence[str], env: dict[str, str],
    timeout_s: float = 300,
) -> ColdStart:
    """Start a fresh interpreter that loads ``contender`` and runs it once on ``texts``.

    Raises:
        BenchError: the child failed or timed out; the message has its last error line.
    """
    from onnx_engine.bench.errors import BenchError

    spec = {
        "module": contender.__module__, "class": contender.__qualname__,
        "settings": {key: _jsonable(value) for key, value in asdict(settings).items()},
        "texts": list(texts),
    }
    started = time.time()
    try:
        done = subprocess.run(
            [sys.executable, "-m", __name__, json.dumps(spec)], env=env, capture_output=True,
            text=True, timeout=timeout_s, check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise BenchError(f"cold start of {contender.name} took over {timeout_s:.0f} s") from error
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise BenchError(f"cold start of {contender.name} failed: {last}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return ColdStart(report["first_result_at"] - started, report["peak_rss_bytes"],
                     tuple(report["imported"]))


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    return value


def _child(spec: dict[str, Any]) -> dict[str, Any]:
    module = importlib.import_module(spec["module"])
    contender_class = getattr(module, spec["class"])
    base = importlib.import_module("onnx_engine.bench.contenders.base")
    raw = spec["settings"]
    settings = base.ContenderSettings(
        **{**raw, "artifact": Path(raw["artifact"]), "cache_dir": Path(raw["cache_dir"]),
           "graphs": {role: Path(path) for role, path in raw["graphs"].items()}}
    )
    contender = contender_class(settings)
    contender.load()
    contender.prepare(spec["texts"])
    contender.run()
    first_result_at = time.time()
    imported = [name for name in _WATCHED_MODULES if name in sys.modules]
    return {"first_result_at": first_result_at, "peak_rss_bytes": peak_rss_bytes(),
            "imported": imported}


def peak_rss_bytes() -> int:
    """This process's peak resident memory.

    Linux's ``getrusage`` ``ru_maxrss`` survives ``exec`` (a child started from a 600 MB parent
    reports at least 600 MB), so the kernel's per-address-space high-water mark ``VmHWM`` is read
    instead; other systems fall back to ``ru_maxrss`` (bytes on macOS, kilobytes elsewhere).
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.argv[1]))), flush=True)
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: torch's can take seconds and is not start-up time
