"""Text-to-text generation (T5) from an exported artifact, with ONNX Runtime and NumPy only.

``Seq2SeqLM`` gives the vocabulary logits of the LM head three ways: teacher-forced for given
target texts (``logits``, ``score``), for every generated step (``generate(output_scores=True)``),
and through greedy or beam search decoding that reproduces ``transformers``' ``generate``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from engine.checks import check_flag
from engine.errors import InputError
from engine.io_binding import host_array
from engine.manifest import TASK_TEXT2TEXT
from engine.options import ENGINE_DEFAULTS, RuntimeOptions, required
from engine.seq2seq.beam_search import BeamSearch
from engine.seq2seq.decoding import (
    ForcedDecoding,
    GenerationSettings,
    GreedySearch,
    OnStep,
    run_decoder,
)
from engine.seq2seq.generation_args import GenerationArgs
from engine.seq2seq.graphs import EncoderState, Seq2SeqGraphs
from engine.seq2seq.outputs import (
    EncoderOutput,
    GeneratedSequence,
    TargetLogits,
    generated_sequence,
)
from engine.tasks.base import ArtifactModel
from engine.tokenization import (
    EncodedBatch,
    EncodedRow,
    TextTokenizer,
    as_text_list,
    check_batch_size,
)
from engine.variants.sessions import open_graphs, options_for

# The decode loop alternates three sessions; spinning intra-op threads of the session that just
# ran would compete with the next one, so seq2seq loads its sessions without spinning. Measured on
# full-size random t5-small, 32 greedy tokens at batch 1 (2-core CPU): spinning made the first
# decoder step ~2x a later one (15-16 vs 5-6 ms) and the whole generate 250-280 ms instead of
# ~200. The other defaults held up there too: one thread per core (1 thread: 270-300 ms), graph
# optimization "all" ("extended"/"basic" equal within noise), arena on (off: equal).
DEFAULT_OPTIONS = RuntimeOptions(spin_wait=False).over(ENGINE_DEFAULTS)
logger = logging.getLogger(__name__)
SCORE_REDUCTIONS = ("sum", "mean")
# Generate calls of at least this many decoder rows (batch x beams) run the variant timed fastest
# on the batch workload (this many rows) where that is not auto's pick. Measured on an Intel Xeon
# with AMX, t5-small, 32 greedy tokens, 0.2% CPU time stolen: int4 (MatMulNBits) 4.68 ms per
# token at batch 1 vs int8's 7.36, but 10.68 at batch 8 vs int8's 9.63 (MLAS's int8 GEMM runs
# on AMX; its 4-bit kernels at several rows do not); at 4 rows (4 beams) the two were within
# noise of each other (int4 8.31, int8 9.35; optimize's batch-4 timings ranked them both ways).
BATCH_ROWS = 8
BATCH_WORKLOAD = f"batch{BATCH_ROWS}_decode"


def is_batched_call(rows: int) -> bool:
    """Whether a generate call of ``rows`` decoder rows (batch x beams) runs the batch variant
    where there is one (the bench judges ``auto`` by the same rule)."""
    return rows >= BATCH_ROWS


class Seq2SeqLM(ArtifactModel):
    """A T5-style encoder-decoder running on ONNX Runtime with tokenizers and NumPy only."""

    task = TASK_TEXT2TEXT
    default_options = DEFAULT_OPTIONS
    provider_role = "decoder_with_past"  # the decoder: what runs for every generated token
    batch_workload = BATCH_WORKLOAD

    def _assemble(self, options: RuntimeOptions) -> None:
        artifact = self.artifact
        generation = artifact.manifest.generation
        self.settings = GenerationSettings.from_manifest(generation)
        if generation.get("checkpoint_defaults_not_applied"):
            logger.warning(
                "%s: the checkpoint's generation config sets %s, which the engine does not apply "
                "(transformers' generate() would unless overridden); outputs can differ from it.",
                artifact.path.name,
                generation["checkpoint_defaults_not_applied"],
            )
        self.graphs = Seq2SeqGraphs(self.sessions, required(options.io_binding, "io_binding"),
                                    guard_finite=self.guard_finite)
        self.tokenizer = TextTokenizer.from_artifact(artifact)
        self._options = options
        self._batch_graphs: Seq2SeqGraphs | None = None
        self._batch_graphs_lock = threading.Lock()  # servers generate from worker threads

    def _graphs_for(self, rows: int) -> Seq2SeqGraphs:
        """The graphs a generate call of ``rows`` decoder rows (batch x beams) runs: those of
        ``variant_for_batches`` from ``BATCH_ROWS`` rows on, opened on the first such call (a
        load that serves only batch 1 never pays for them), else the loaded variant's."""
        record = self.variant_for_batches
        if record is None or not is_batched_call(rows):
            return self.graphs
        with self._batch_graphs_lock:
            if self._batch_graphs is None:
                sessions = open_graphs(self.artifact, record.graphs,
                                       options_for(record, self._options))
                self._batch_graphs = Seq2SeqGraphs(
                    sessions, required(self._options.io_binding, "io_binding"),
                    guard_finite=self.guard_finite)
                logger.info("%s: calls of %d or more decoder rows run variant '%s' (timed "
                            "faster than '%s' on %s here)", self.artifact.path.name, BATCH_ROWS,
                            record.name, self.variant, BATCH_WORKLOAD)
        return self._batch_graphs

    def open_batch_variant(self) -> None:
        self._graphs_for(BATCH_ROWS)

    def encode(self, texts: str | Sequence[str], truncation: bool = False) -> EncoderOutput:
        """Encoder last hidden state of a padded batch.

        Sources are used whole, as ``transformers`` does for T5 (relative position buckets take
        any length); ``truncation=True`` cuts them at the tokenizer's ``max_length``.

        Raises:
            InputError: not a string or list of strings.
        """
        encoder = self._encode(self._texts(texts, "source"), check_flag("truncation", truncation))
        return EncoderOutput(host_array(encoder.hidden), encoder.mask)

    def timing_calls(self) -> dict[str, Callable[[], object]]:
        """Teacher-forced decoding through the KV cache: the same steps for every variant."""
        source = "translate English to German: The weather is nice today and we walk outside."
        target = "Das Wetter ist heute schön und wir gehen draußen spazieren."
        return {
            "b1_decode": lambda: self.logits([source], [target], use_cache=True),
            BATCH_WORKLOAD: lambda: self.logits([source] * BATCH_ROWS, [target] * BATCH_ROWS,
                                                use_cache=True),
        }

    def logits(
        self,
        sources: str | Sequence[str],
        targets: str | Sequence[str],
        use_cache: bool = False,
        truncation: bool = False,
    ) -> TargetLogits:
        """Teacher-forced logits of each target given its source, as one padded batch.

        The decoder input is the target shifted right behind ``decoder_start_token_id``, as T5
        trains. ``use_cache`` feeds it token by token through the KV cache instead of in one call
        (same logits; the export parity check uses it to test the cached path). An empty target
        is just EOS. ``truncation`` cuts sources and targets at ``max_length`` (off by default,
        as in ``transformers``).

        Raises:
            InputError: bad texts, or not one target per source.
        """
        source_list, target_list = self._pairs(sources, targets)
        return self._target_logits(
            source_list, target_list, check_flag("use_cache", use_cache),
            check_flag("truncation", truncation),
        )

    def score(
        self,
        sources: str | Sequence[str],
        targets: str | Sequence[str],
        reduction: str = "sum",
        batch_size: int = 32,
        truncation: bool = False,
    ) -> np.ndarray:
        """Log-probability ``[batch]`` of each target given its source (``mean``: per token).

        An empty target scores EOS alone, as ``transformers`` does.

        Raises:
            InputError: bad texts, mismatched counts, or an unknown ``reduction``.
        """
        if reduction not in SCORE_REDUCTIONS:
            raise InputError(f"reduction must be one of {SCORE_REDUCTIONS}, got {reduction!r}.")
        source_list, target_list = self._pairs(sources, targets)
        batch_size = check_batch_size(batch_size)
        truncation = check_flag("truncation", truncation)
        scores = []
        for start in range(0, len(source_list), batch_size):
            chunk = slice(start, start + batch_size)
            forced = self._target_logits(
                source_list[chunk], target_list[chunk], truncation=truncation
            )
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
        truncation: bool = False,
        cancelled: Callable[[], Sequence[bool]] | None = None,
        on_step: OnStep | None = None,
    ) -> list[GeneratedSequence]:
        """Generate from each text with greedy (``num_beams=1``) or beam search, KV-cached.

        Each batch is encoded once; the decoder runs ``decoder_model`` for the first token and
        ``decoder_with_past`` after that, one token per row, and a row stops at EOS (the batch when
        all rows have). Results match ``transformers`` ``generate(do_sample=False, ...)`` with the
        same arguments. ``max_new_tokens`` defaults to the model's ``max_length - 1`` and may
        not exceed the tokenizer's ``model_max_length`` (memory follows the tokens produced, not
        the request). Sources are used whole unless ``truncation=True``; an empty source is
        valid (T5 reads just EOS).

        ``cancelled``, when given, returns one flag per text (True: its result is no longer
        wanted, e.g. a server's client went away) and is asked between decoder steps, from the
        calling thread. A cancelled text is retired as a finished one is, a batch whose texts are
        all cancelled stops decoding there, and its result is marked ``cancelled`` (no output).

        ``on_step``, when given (greedy only), is called from the calling thread after every
        decoder step with the tokens it chose (:class:`engine.seq2seq.decoding.StepTokens`, rows
        numbered as ``texts``), before the next step runs: tokens can be streamed as they come.
        Beam search has no such tokens: a later step may replace every earlier one.

        Raises:
            InputError: bad texts or a bad argument (see :class:`GenerationArgs`).
        """
        items = self._texts(texts, "source")
        args = GenerationArgs(max_new_tokens, num_beams, length_penalty, early_stopping,
                              output_scores, output_logits, batch_size, truncation)
        batches = (self.tokenizer.encode_rows(items[start : start + args.batch_size],
                                              args.truncation, "source")
                   for start in range(0, len(items), args.batch_size))
        return self._generated(batches, len(items), args, cancelled, on_step)

    def generate_encoded(
        self, rows: Sequence[EncodedRow], args: GenerationArgs,
        cancelled: Callable[[], Sequence[bool]] | None = None, on_step: OnStep | None = None,
    ) -> list[GeneratedSequence]:
        """:meth:`generate` of sources already encoded (``tokenizer.encode_rows``, or a server's
        queue, which tokenizes each text once) with checked arguments; ``args.truncation`` is
        not applied again (the rows are what the encoder reads). ``on_step`` as in :meth:`generate`.

        Raises:
            InputError: ``max_new_tokens`` over the output limit, a bad ``cancelled``
                or ``on_step``.
        """
        batches = (rows[start : start + args.batch_size]
                   for start in range(0, len(rows), args.batch_size))
        return self._generated(batches, len(rows), args, cancelled, on_step)

    def _generated(
        self, batches: Iterable[Sequence[EncodedRow]], total: int, args: GenerationArgs,
        cancelled: Callable[[], Sequence[bool]] | None, on_step: OnStep | None,
    ) -> list[GeneratedSequence]:
        max_new_tokens = args.new_tokens(self.settings.default_max_new_tokens, self.output_limit)
        if cancelled is not None and not callable(cancelled):
            raise InputError(f"cancelled must be a function returning one flag per text, got "
                             f"{type(cancelled).__name__}.")
        _check_on_step(on_step, args.num_beams)
        results: list[GeneratedSequence] = []
        for chunk in batches:
            start = len(results)
            flags = None if cancelled is None else _flags(cancelled, total, start, args.batch_size)
            rows_hook = None if on_step is None else _rows_from(on_step, start)
            results += self._generate_batch(chunk, args, max_new_tokens, flags, rows_hook)
        return results

    @property
    def output_limit(self) -> int:
        """The most new tokens one call may ask for: the tokenizer's ``model_max_length``."""
        return self.tokenizer.max_length

    def _generate_batch(
        self, chunk: Sequence[EncodedRow], args: GenerationArgs, max_new_tokens: int,
        cancelled: Callable[[], np.ndarray] | None = None, on_step: OnStep | None = None,
    ) -> list[GeneratedSequence]:
        if cancelled is not None and cancelled().all():
            return [_cancelled_result() for _ in chunk]
        keep_logits = args.output_scores or args.output_logits
        eos, pad = self.settings.eos_token_ids, self.settings.pad_token_id
        if args.num_beams == 1:
            strategy: GreedySearch | BeamSearch = GreedySearch(
                len(chunk), max_new_tokens, eos, pad, keep_logits, on_step
            )
        else:
            strategy = BeamSearch(len(chunk), args.num_beams, max_new_tokens, eos,
                                  args.length_penalty, args.early_stopping, keep_logits)
        start_ids = np.full(len(chunk), self.settings.decoder_start_token_id, np.int64)
        should_stop = None if cancelled is None else (lambda: strategy.retire(cancelled()))
        graphs = self._graphs_for(len(chunk) * args.num_beams)
        run_decoder(graphs, self._encode_rows(chunk, graphs), start_ids, strategy, should_stop)
        decoded = strategy.result()
        texts_out = self.tokenizer.decode(decoded.token_rows())
        gone = np.zeros(len(chunk), bool) if cancelled is None else cancelled()
        return [
            _cancelled_result() if gone[index] else generated_sequence(
                decoded, index, text, args.length_penalty, keep_logits, args.output_logits)
            for index, text in enumerate(texts_out)
        ]

    def decoder_logits(
        self, sources: str | Sequence[str], decoder_input_ids: np.ndarray, use_cache: bool = False
    ) -> np.ndarray:
        """Teacher-forced logits ``[batch, len, vocab]`` for given decoder input ids.

        Row ``i`` of ``decoder_input_ids`` starts with ``decoder_start_token_id`` and is fed to
        the decoder against source ``i``; position ``t`` of the result predicts the token after
        input ``t``. Rows may be padded at the end: the decoder is causal, so padding never changes
        earlier positions. ``use_cache`` feeds the ids one by one through the KV cache.

        Raises:
            InputError: bad sources, or ids that are not ``[len(sources), length]`` integers
                in ``[0, vocab_size)`` (ONNX ``Gather`` would wrap a negative id silently).
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
        vocab = self.settings.vocab_size
        outside = (ids < 0) | (ids >= vocab) if vocab is not None else ids < 0
        if outside.any():
            row, column = (int(i) for i in np.argwhere(outside)[0])
            raise InputError(
                f"decoder_input_ids[{row}, {column}] = {int(ids[row, column])} is not a token id: "
                f"ids must lie in [0, {vocab if vocab is not None else 'vocab_size'})."
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
        self, sources: list[str], targets: list[str], use_cache: bool = False,
        truncation: bool = False,
    ) -> TargetLogits:
        encoder = self._encode(sources, truncation)
        target = self.tokenizer.encode(targets, truncation, "target")
        start = np.full((len(targets), 1), self.settings.decoder_start_token_id, np.int64)
        decoder_inputs = np.concatenate([start, target.input_ids[:, :-1]], axis=1)
        logits = self._forced_logits(encoder, decoder_inputs, use_cache)
        return TargetLogits(logits, target.input_ids, target.attention_mask)

    def _encode(self, sources: list[str], truncation: bool = False) -> EncoderState:
        return self._encode_rows(self.tokenizer.encode_rows(sources, truncation, "source"))

    def _encode_rows(
        self, rows: Sequence[EncodedRow], graphs: Seq2SeqGraphs | None = None
    ) -> EncoderState:
        batch = EncodedBatch.from_rows(rows, self.tokenizer.pad_id)
        return (graphs or self.graphs).encode(batch.input_ids, batch.attention_mask)

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
        """The texts as a list. An empty text is valid: T5 reads just EOS, as in transformers."""
        items, _ = as_text_list(texts, what)  # without allow_pairs: strings only
        return [item for item in items if isinstance(item, str)]


def _cancelled_result() -> GeneratedSequence:
    return GeneratedSequence("", np.zeros(0, dtype=np.int64), cancelled=True)


def _check_on_step(on_step: OnStep | None, num_beams: int) -> None:
    if on_step is None:
        return
    if not callable(on_step):
        raise InputError(f"on_step must be a function taking each step's tokens, got "
                         f"{type(on_step).__name__}.")
    if num_beams != 1:
        raise InputError(
            f"on_step streams greedy decoding only, got num_beams={num_beams}: a beam search "
            "step may replace every token chosen before it. Use num_beams=1, or no on_step."
        )


def _rows_from(on_step: OnStep, start: int) -> OnStep:
    """``on_step`` for the batch of texts from ``start``: its rows numbered as in the call."""
    if start == 0:
        return on_step
    return lambda tokens: on_step(tokens.shifted(start))


def _flags(
    cancelled: Callable[[], Sequence[bool]], total: int, start: int, size: int
) -> Callable[[], np.ndarray]:
    """``cancelled`` narrowed to the batch of texts ``start : start + size``, as a bool array.

    Raises:
        InputError: ``cancelled()`` does not give one flag per text.
    """
    def flags() -> np.ndarray:
        every = np.asarray(cancelled(), dtype=bool)
        if every.shape != (total,):
            raise InputError(f"cancelled() must return {total} flags (one per text), got "
                             f"shape {every.shape}.")
        return every[start : start + size]

    return flags
