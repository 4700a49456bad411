"""Text-to-text generation (T5) from an exported artifact, with ONNX Runtime and NumPy only.

``Seq2SeqLM`` gives the vocabulary logits of the LM head three ways: teacher-forced for given
target texts (``logits``, ``score``), for every generated step (``generate(output_scores=True)``),
and through greedy or beam search decoding that reproduces ``transformers``' ``generate``.
"""

from __future__ import annotations

import logging

from typing import Mapping, Sequence

import numpy as np

from engine.artifact import Artifact
from engine.artifact_model import ArtifactModel
from engine.beam_search import BeamSearch
from engine.decoding import ForcedDecoding, GenerationSettings, GreedySearch, run_decoder
from engine.errors import InputError
from engine.io_binding import host_array
from engine.manifest import TASK_TEXT2TEXT
from engine.seq2seq_outputs import (
    EncoderOutput,
    GeneratedSequence,
    TargetLogits,
    generated_sequence,
)
from engine.seq2seq_graphs import EncoderState, Seq2SeqGraphs
from engine.session import EngineSession, RuntimeOptions
from engine.tokenization import TextTokenizer, as_text_list, check_batch_size
from engine.variants import FP32

# The decode loop alternates three sessions; spinning intra-op threads of the session that just
# ran would compete with the next one, so seq2seq loads its sessions without spinning. Measured on
# full-size random t5-small, 32 greedy tokens at batch 1 (2-core CPU): spinning made the first
# decoder step ~2x a later one (15-16 vs 5-6 ms) and the whole generate 250-280 ms instead of
# ~200. The other defaults held up there too: one thread per core (1 thread: 270-300 ms), graph
# optimization "all" ("extended"/"basic" equal within noise), arena on (off: equal).
DEFAULT_OPTIONS = RuntimeOptions(spin_wait=False)
logger = logging.getLogger(__name__)
SCORE_REDUCTIONS = ("sum", "mean")


class Seq2SeqLM(ArtifactModel):
    """A T5-style encoder-decoder running on ONNX Runtime with tokenizers and NumPy only.

    ``variant`` names the graphs in use (``fp32``, ``fused``, ``int8``, ``fp16``).
    """

    task = TASK_TEXT2TEXT
    default_options = DEFAULT_OPTIONS

    def __init__(
        self,
        artifact: Artifact,
        graphs: Seq2SeqGraphs,
        tokenizer: TextTokenizer,
        settings: GenerationSettings,
        variant: str = FP32,
    ) -> None:
        self.artifact = artifact
        self.graphs = graphs
        self.tokenizer = tokenizer
        self.settings = settings
        self.variant = variant

    @classmethod
    def from_sessions(
        cls,
        artifact: Artifact,
        sessions: Mapping[str, EngineSession],
        options: RuntimeOptions,
        variant: str,
        checked: bool,
    ) -> Seq2SeqLM:
        generation = artifact.manifest.generation
        settings = GenerationSettings.from_manifest(generation)
        if generation.get("checkpoint_defaults_not_applied"):
            logger.warning(
                "%s: the checkpoint's generation config sets %s, which the engine does not apply "
                "(transformers' generate() would unless overridden); outputs can differ from it.",
                artifact.path.name,
                generation["checkpoint_defaults_not_applied"],
            )
        graphs = Seq2SeqGraphs(sessions, options.io_binding, guard_finite=checked)
        return cls(artifact, graphs, TextTokenizer.from_artifact(artifact), settings, variant)

    @property
    def providers(self) -> list[str]:
        """The execution providers the decoder really uses, best first."""
        return self.graphs.providers

    def encode(self, texts: str | Sequence[str]) -> EncoderOutput:
        """Encoder last hidden state of a padded batch (sources over ``max_length`` truncated).

        Raises:
            InputError: not a string or list of strings, or an empty text.
        """
        encoder = self._encode(self._texts(texts, "source"))
        return EncoderOutput(host_array(encoder.hidden), encoder.mask)

    def logits(
        self, sources: str | Sequence[str], targets: str | Sequence[str], use_cache: bool = False
    ) -> TargetLogits:
        """Teacher-forced logits of each target given its source, as one padded batch.

        The decoder input is the target shifted right behind ``decoder_start_token_id``, as T5
        trains. ``use_cache`` feeds it token by token through the KV cache instead of in one call
        (same logits; the export parity check uses it to test the cached path).

        Raises:
            InputError: bad or empty texts, or not one target per source.
        """
        return self._target_logits(*self._pairs(sources, targets), use_cache=use_cache)

    def score(
        self,
        sources: str | Sequence[str],
        targets: str | Sequence[str],
        reduction: str = "sum",
        batch_size: int = 32,
    ) -> np.ndarray:
        """Log-probability ``[batch]`` of each target given its source (``mean``: per token).

        Raises:
            InputError: bad or empty texts, mismatched counts, or an unknown ``reduction``.
        """
        if reduction not in SCORE_REDUCTIONS:
            raise InputError(f"reduction must be one of {SCORE_REDUCTIONS}, got {reduction!r}.")
        source_list, target_list = self._pairs(sources, targets)
        batch_size = check_batch_size(batch_size)
        scores = []
        for start in range(0, len(source_list), batch_size):
            chunk = slice(start, start + batch_size)
            forced = self._target_logits(source_list[chunk], target_list[chunk])
            log_probs = forced.target_log_probs().astype(np.float64).sum(axis=1)
            scores.append(log_probs / forced.mask.sum(axis=1) if reduction == "mean" else log_probs)
        return np.concatenate(scores)

    def generate(
        self,
        texts: str | Sequence[str],
        max_new_tokens: int | None = None,
        num_beams: int = 1,
        length_penalty: float = 1.0,
        early_stopping: bool | str = False,
        output_scores: bool = False,
        output_logits: bool = False,
        batch_size: int = 16,
    ) -> list[GeneratedSequence]:
        """Generate from each text with greedy (``num_beams=1``) or beam search, KV-cached.

        Each batch is encoded once; the decoder runs ``decoder_model`` for the first token and
        ``decoder_with_past`` after that, one token per row, and a row stops at EOS (the batch when
        all rows have). Results match ``transformers`` ``generate(do_sample=False, ...)`` with the
        same arguments. ``max_new_tokens`` defaults to the model's ``max_length - 1``.

        Raises:
            InputError: bad or empty texts, ``max_new_tokens < 1``, ``num_beams < 1``, or an
                ``early_stopping`` other than True, False or "never".
        """
        items = self._texts(texts, "source")
        max_new_tokens = self._check_generation_args(max_new_tokens, num_beams, early_stopping)
        batch_size = check_batch_size(batch_size)
        keep_logits = output_scores or output_logits
        eos, pad = self.settings.eos_token_ids, self.settings.pad_token_id
        results: list[GeneratedSequence] = []
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            if num_beams == 1:
                strategy = GreedySearch(len(chunk), max_new_tokens, eos, pad, keep_logits)
            else:
                strategy = BeamSearch(len(chunk), num_beams, max_new_tokens, eos, length_penalty,
                                      early_stopping, keep_logits)
            start_ids = np.full(len(chunk), self.settings.decoder_start_token_id, np.int64)
            run_decoder(self.graphs, self._encode(chunk), start_ids, strategy)
            decoded = strategy.result()
            texts_out = self.tokenizer.decode(decoded.token_rows())
            results += [
                generated_sequence(decoded, index, text, length_penalty, keep_logits, output_logits)
                for index, text in enumerate(texts_out)
            ]
        return results

    def _check_generation_args(
        self, max_new_tokens: object, num_beams: object, early_stopping: object
    ) -> int:
        """The number of new tokens to generate, after checking every decoding argument."""
        if not _is_positive_int(num_beams):
            raise InputError(
                f"num_beams must be a positive integer (1 = greedy), got {num_beams!r}."
            )
        if not (early_stopping is True or early_stopping is False or early_stopping == "never"):
            raise InputError(
                f"early_stopping must be True, False or 'never', got {early_stopping!r}."
            )
        if max_new_tokens is None:
            return self.settings.default_max_new_tokens
        if not _is_positive_int(max_new_tokens):
            raise InputError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}.")
        return int(max_new_tokens)

    def decoder_logits(
        self, sources: str | Sequence[str], decoder_input_ids: np.ndarray, use_cache: bool = False
    ) -> np.ndarray:
        """Teacher-forced logits ``[batch, len, vocab]`` for given decoder input ids.

        Row ``i`` of ``decoder_input_ids`` starts with ``decoder_start_token_id`` and is fed to
        the decoder against source ``i``; position ``t`` of the result predicts the token after
        input ``t``. Rows may be padded at the end: the decoder is causal, so padding never changes
        earlier positions. ``use_cache`` feeds the ids one by one through the KV cache.

        Raises:
            InputError: bad or empty sources, or ids that are not ``[len(sources), length]``
                integers.
        """
        source_list = self._texts(sources, "source")
        ids = np.asarray(decoder_input_ids)
        if ids.ndim != 2 or ids.shape[0] != len(source_list) or ids.shape[1] < 1 or not (
            np.issubdtype(ids.dtype, np.integer)
        ):
            raise InputError(
                f"decoder_input_ids must be integers shaped [{len(source_list)}, length >= 1] "
                f"(one row per source), got {ids.dtype} {ids.shape}."
            )
        return self._forced_logits(self._encode(source_list), ids.astype(np.int64), use_cache)

    def _forced_logits(
        self, encoder: EncoderState, decoder_inputs: np.ndarray, use_cache: bool
    ) -> np.ndarray:
        if not use_cache:
            logits, _ = self.graphs.first_step(decoder_inputs, encoder)
            return logits
        forced = ForcedDecoding(decoder_inputs)
        run_decoder(self.graphs, encoder, decoder_inputs[:, 0], forced)
        return forced.logits()

    def _target_logits(
        self, sources: list[str], targets: list[str], use_cache: bool = False
    ) -> TargetLogits:
        encoder = self._encode(sources)
        target = self.tokenizer.encode(targets)
        start = np.full((len(targets), 1), self.settings.decoder_start_token_id, np.int64)
        decoder_inputs = np.concatenate([start, target.input_ids[:, :-1]], axis=1)
        logits = self._forced_logits(encoder, decoder_inputs, use_cache)
        return TargetLogits(logits, target.input_ids, target.attention_mask)

    def _encode(self, sources: list[str]) -> EncoderState:
        batch = self.tokenizer.encode(sources)
        return self.graphs.encode(batch.input_ids, batch.attention_mask)

    def _pairs(
        self, sources: str | Sequence[str], targets: str | Sequence[str]
    ) -> tuple[list[str], list[str]]:
        source_list, target_list = self._texts(sources, "source"), self._texts(targets, "target")
        if len(source_list) != len(target_list):
            raise InputError(
                f"Got {len(source_list)} sources but {len(target_list)} targets; pass one target "
                "per source."
            )
        return source_list, target_list

    @staticmethod
    def _texts(texts: str | Sequence[str], what: str) -> list[str]:
        """The texts as a list; an empty one is refused (T5 would read just ``</s>``)."""
        items, _ = as_text_list(texts, what)
        for index, text in enumerate(items):
            if not text.strip():
                raise InputError(
                    f"{what} #{index} is empty; a {what} needs at least one non-space character."
                )
        return items


def _is_positive_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1
