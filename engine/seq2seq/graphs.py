"""The three ONNX graphs of a seq2seq artifact, and the only code that runs them.

The encoder reads the source once. ``decoder_model`` runs the first step: it reads the encoder
output, computes every layer's cross-attention keys/values from it and returns them with the
self-attention cache. ``decoder_with_past`` runs every later step: one new token per row against
the cache. Which files these are (fp32, fused, int8, fp16) is the variant's business; whether
the cache stays on the device between steps is IO binding's (:mod:`engine.io_binding`), and
beam search moves its rows there too (:mod:`engine.row_gather`).

Measured on full-size random t5-small (batch 1, 34 source tokens, 2-core CPU, no spinning): the
first step costs a later step plus the cross-attention K/V projections (~7.7 vs ~5.8 ms; ORT's
profiler puts the difference in those MatMuls). ``decoder_with_past`` does accept an empty
self-attention cache, and then costs a later step (~6.0 ms), but the cross K/V still have to be
computed once: in a separate graph, all layers in one MatMul, that took ~1.4 ms, so the pair
costs what ``decoder_model`` does and the artifact keeps its three graphs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from engine.errors import CorruptArtifactError
from engine.io_binding import DeviceValue, graph_call
from engine.row_gather import DeviceRowGather, take_rows_on_host
from engine.seq2seq.kv_cache import DecoderCache, RowTake, is_present
from engine.session import EngineSession

GRAPH_ROLES = ("encoder", "decoder", "decoder_with_past")


@dataclass(frozen=True)
class EncoderState:
    """Encoder output and its attention mask; every decoder step needs the mask.

    ``hidden`` is a NumPy array, or an ``OrtValue`` left on the device by a bound encoder call.
    """

    hidden: DeviceValue  # [rows, source_len, d_model]
    mask: np.ndarray  # [rows, source_len], int64, 0 on padding


class Seq2SeqGraphs:
    """The encoder, first-step decoder and with-past decoder sessions of one variant.

    ``guard_finite`` turns NaN/inf logits into an error; the optimizer switches it off to measure
    a variant's NaN/inf as a gate failure instead of stopping at the first one.
    """

    def __init__(
        self,
        sessions: Mapping[str, EngineSession],
        io_binding: str = "auto",
        guard_finite: bool = True,
    ) -> None:
        missing = [role for role in GRAPH_ROLES if role not in sessions]
        if missing:
            folder = next((str(s.path.parent) for s in sessions.values()), "the artifact")
            raise CorruptArtifactError(
                f"'{folder}' lists no graph for {missing}; a seq2seq artifact needs "
                f"{', '.join(GRAPH_ROLES)}. Re-export it with --task text2text-generation."
            )
        self.sessions = {role: sessions[role] for role in GRAPH_ROLES}
        self._calls = {
            role: graph_call(session, io_binding) for role, session in self.sessions.items()
        }
        self.guard_finite = guard_finite
        # Beam search moves cache rows where the cache is: on the device when bound.
        self._take_rows: RowTake = (
            DeviceRowGather(self.sessions["decoder_with_past"]) if self.bound else take_rows_on_host
        )
        # Asked for by name, logits first: the graphs' own output order is Optimum's business.
        self._first_outputs = _logits_and_presents(self.sessions["decoder"])
        self._next_outputs = _logits_and_presents(self.sessions["decoder_with_past"])

    @property
    def providers(self) -> list[str]:
        return self.sessions["decoder_with_past"].providers

    @property
    def on_cuda(self) -> bool:
        return all(session.on_cuda for session in self.sessions.values())

    @property
    def bound(self) -> bool:
        """Whether the graphs run through IO binding (the KV cache stays on the device)."""
        return self._calls["decoder_with_past"].bound

    def encode(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> EncoderState:
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        (hidden,) = self._calls["encoder"].run(feeds, ["last_hidden_state"])
        return EncoderState(hidden, attention_mask)

    def first_step(
        self, decoder_ids: np.ndarray, encoder: EncoderState
    ) -> tuple[np.ndarray, DecoderCache]:
        """Logits ``[rows, len, vocab]`` for whole decoder inputs, and the cache they leave.

        Raises:
            OnnxEngineError: ONNX Runtime fails, or the logits hold NaN/inf (when guarded).
        """
        feeds = {
            "input_ids": decoder_ids,
            "encoder_hidden_states": encoder.hidden,
            "encoder_attention_mask": encoder.mask,
        }
        logits, *presents = self._calls["decoder"].run(feeds, self._first_outputs)
        self._check(logits, "decoder")
        names = self._first_outputs[1:]
        return logits, DecoderCache.from_first_step(names, presents, self._take_rows)

    def next_step(
        self, decoder_ids: np.ndarray, cache: DecoderCache, encoder_mask: np.ndarray
    ) -> tuple[np.ndarray, DecoderCache]:
        """Logits ``[rows, 1, vocab]`` for one new token per row, and the grown cache.

        Raises:
            OnnxEngineError: ONNX Runtime fails, or the logits hold NaN/inf (when guarded).
        """
        feeds = {"input_ids": decoder_ids, "encoder_attention_mask": encoder_mask, **cache.feeds()}
        logits, *presents = self._calls["decoder_with_past"].run(feeds, self._next_outputs)
        self._check(logits, "decoder_with_past")
        return logits, cache.advanced(self._next_outputs[1:], presents)

    def _check(self, logits: np.ndarray, role: str) -> None:
        if self.guard_finite:
            self.sessions[role].check_finite(logits)


def _logits_and_presents(session: EngineSession) -> list[str]:
    return ["logits", *(name for name in session.output_names if is_present(name))]
