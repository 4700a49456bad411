"""The bench's T5 targets judge what the engine's ``auto`` really runs per call: its pick for one
decoder row, and the variant it runs batched calls on (``auto_for_batches``) from BATCH_ROWS rows
(batch x beams: 8) on."""

from __future__ import annotations

from onnx_engine.bench.targets import check_targets


def _row(variant: str, contender: str, batch: int, ms_per_token: float, beams: int = 1) -> dict:
    return {"contender": contender, "variant": variant, "batch": batch, "seq": 16,
            "beams": beams, "p50_ms": ms_per_token * 32, "ms_per_token": ms_per_token}


def _ct2_targets(rows: list[dict], for_batches: str | None) -> dict[str, float]:
    model = {"task": "text2text-generation", "rows": rows, "decode_steps": [], "agreement": [],
             "cold_starts": [],
             "variants": {"run": ["int4", "int8"], "auto": "int4", "auto_for_batches": for_batches}}
    return {f"{check['target']} @ {check['workload']}": check["measured"]
            for check in check_targets(model) if "ctranslate2" in check["target"]}


def test_batched_workloads_are_judged_on_the_variant_auto_runs_them_on():
    rows = [_row("int4", "engine", 1, 4.0), _row("int8", "engine", 1, 6.0),
            _row("int8", "ctranslate2", 1, 6.0),
            _row("int4", "engine", 8, 10.0), _row("int8", "engine", 8, 8.0),
            _row("int8", "ctranslate2", 8, 12.0)]
    assert _ct2_targets(rows, "int8") == {
        "engine auto (int4) vs ctranslate2 int8 per token (1 beams) @ b1 s16": 1.5,
        "engine auto (int8) vs ctranslate2 int8 per token (1 beams) @ b8 s16": 1.5,
    }
    # no batched variant: int4 runs every call
    assert _ct2_targets(rows, None)[
        "engine auto (int4) vs ctranslate2 int8 per token (1 beams) @ b8 s16"] == 1.2


def test_beams_count_as_rows():
    rows = [_row(variant, contender, batch, ms, beams=4) for variant, contender, batch, ms in (
        ("int4", "engine", 1, 9.0), ("int8", "engine", 1, 8.0), ("int8", "ctranslate2", 1, 10.0),
        ("int4", "engine", 2, 9.0), ("int8", "engine", 2, 8.0), ("int8", "ctranslate2", 2, 10.0))]
    targets = _ct2_targets(rows, "int8")
    # 4 beams of one source are 4 rows: int4; of two sources, 8 rows: int8
    assert targets["engine auto (int4) vs ctranslate2 int8 per token (4 beams) @ b1 s16"] == 10 / 9
    assert targets["engine auto (int8) vs ctranslate2 int8 per token (4 beams) @ b2 s16"] == 1.25
