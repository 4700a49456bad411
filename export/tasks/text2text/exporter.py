"""Export-time steps for ``T5ForConditionalGeneration`` (task ``text2text-generation``).

Optimum's ``text2text-generation-with-past`` writes four graphs. The artifact keeps three: the
encoder, ``decoder_model`` (first step, no cache) and ``decoder_with_past_model`` (later steps).
``decoder_model_merged.onnx`` is dropped: it only saves disk by putting both decoders behind an
``If`` node, which the ORT transformer optimizer turns into an empty graph and ``quantize_dynamic``
does not descend into, so optimized variants could never be built from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from engine.manifest import TASK_TEXT2TEXT
from engine.tasks.text2text import Seq2SeqLM
from engine.verification.references import logsumexp, topk_rows, write_references
from export.check_set import check_texts
from export.dependencies import require
from export.errors import ExportError
from export.parity import OutputPair, ParityReport
from export.tasks.base import (
    TaskExporter,
    exported_fp32,
    load_pretrained,
    max_input_length,
    torch_no_grad,
)

SUPPORTED_MODEL_TYPES = ("t5",)
# New tokens per check-set source on the greedy path: enough steps for the cache to matter, few
# enough that the check of a full-size model stays in seconds.
GREEDY_TOKENS = 16
# Targets of at least 8 tokens under any T5 vocabulary, so the cached decode runs 8+ steps, and of
# different lengths, so the padded batch has padded target positions too.
PARITY_TARGETS = (
    "Das Haus ist wunderbar, und der Garten ist sehr grün.",
    "Die Katze saß auf der Matte, während es draußen regnete und der Wind laut heulte.",
    "The committee met on Tuesday and agreed to publish the report.",
)


@dataclass(frozen=True)
class Seq2SeqReference:
    """The PyTorch T5 and its tokenizer, as loaded by transformers."""

    model: Any
    tokenizer: Any
    max_length: int

    def check_sources(self, include_empty: bool = True) -> list[str]:
        """The check set, its long texts counted in this tokenizer's tokens: T5 reads them
        whole, so a word count would let the last run far over ``max_length``."""
        return check_texts(self.max_length, include_empty, self._count_tokens)

    def _count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text)["input_ids"])

    def _tokenize(self, texts: list[str], target: bool = False, truncation: bool = False) -> Any:
        """Padded; truncated only when asked: transformers' default for T5, whose relative
        position buckets take any length (the engine's default too)."""
        key = "text_target" if target else "text"
        limit = {"truncation": True, "max_length": self.max_length} if truncation else {}
        return self.tokenizer(**{key: texts}, padding=True, return_tensors="pt", **limit)

    def encoder_states(self, sources: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Encoder last hidden state and attention mask of one padded batch."""
        batch = self._tokenize(sources)
        with torch_no_grad():
            hidden = self.model.get_encoder()(**batch).last_hidden_state
        return hidden.float().numpy(), batch["attention_mask"].numpy()

    def decoder_logits(self, sources: list[str], decoder_input_ids: np.ndarray) -> np.ndarray:
        """Logits ``[batch, len, vocab]`` for given decoder inputs (start token included)."""
        torch = require("torch")
        batch = self._tokenize(sources)
        with torch_no_grad():
            decoder_inputs = torch.as_tensor(decoder_input_ids)
            logits = self.model(**batch, decoder_input_ids=decoder_inputs).logits
        return logits.float().numpy()

    def target_logits(
        self, sources: list[str], targets: list[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Teacher-forced logits ``[batch, target_len, vocab]`` and the target mask."""
        labels = self._tokenize(targets, target=True)
        decoder_input_ids = self.model._shift_right(labels["input_ids"]).numpy()
        return self.decoder_logits(sources, decoder_input_ids), labels["attention_mask"].numpy()

    def generate(
        self, sources: list[str], truncation: bool = False, **options: Any
    ) -> ReferenceGeneration:
        """``generate(do_sample=False, **options)`` on one padded batch, cut after each EOS."""
        generation = self.model.generation_config
        eos = generation.eos_token_id
        eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos])
        with torch_no_grad():
            output = self.model.generate(
                **self._tokenize(sources, truncation=truncation),
                do_sample=False, output_scores=True,
                return_dict_in_generate=True, **options,
            )
        token_ids = []
        for row in output.sequences[:, 1:].tolist():  # drop the decoder start token
            ends = [index for index, token in enumerate(row) if token in eos_ids]
            token_ids.append(row[: ends[0] + 1] if ends else row)
        scores = getattr(output, "sequences_scores", None)
        return ReferenceGeneration(token_ids, None if scores is None else scores.numpy())


@dataclass(frozen=True)
class ReferenceGeneration:
    """Generated ids per input (no start token, up to the first EOS) and beam search's scores."""

    token_ids: list[list[int]]
    sequence_scores: np.ndarray | None


class Seq2SeqExporter(TaskExporter):
    task = TASK_TEXT2TEXT
    optimum_task = "text2text-generation-with-past"
    graph_files: ClassVar[dict[str, str]] = {
        "encoder": "encoder_model.onnx",
        "decoder": "decoder_model.onnx",
        "decoder_with_past": "decoder_with_past_model.onnx",
    }

    @classmethod
    def infers(cls, architecture: str, config: Mapping[str, Any]) -> bool:
        """An encoder-decoder ``*ForConditionalGeneration`` (export checks it is a T5)."""
        return architecture.endswith("ForConditionalGeneration") and bool(
            config.get("is_encoder_decoder")
        )

    def load_reference(self, model: str) -> Seq2SeqReference:
        """Load a T5 checkpoint and its fast tokenizer.

        Raises:
            ExportError: the checkpoint cannot be loaded, is not a T5, or has no tokenizer.json.
        """
        torch_model, tokenizer = load_pretrained(model, "AutoModelForSeq2SeqLM", "a seq2seq LM")
        model_type = torch_model.config.model_type
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ExportError(
                f"'{model}' is a '{model_type}' model; text2text-generation export supports "
                f"{', '.join(SUPPORTED_MODEL_TYPES)} (T5, T5 v1.1, flan-T5)."
            )
        return Seq2SeqReference(torch_model, tokenizer, max_input_length(torch_model, tokenizer))

    def generation_settings(self, reference: Seq2SeqReference) -> dict[str, Any]:
        """Decoding ids and limits from the checkpoint's generation config.

        Raises:
            ExportError: the checkpoint names no decoder start token (T5 checkpoints use pad, 0).
        """
        config = reference.model.config
        generation = reference.model.generation_config
        start = generation.decoder_start_token_id
        start = config.decoder_start_token_id if start is None else start
        if start is None:
            raise ExportError(
                "The checkpoint sets no decoder_start_token_id; T5 checkpoints use the pad token "
                "(0). Set it in config.json or generation_config.json and export again."
            )
        eos = config.eos_token_id if generation.eos_token_id is None else generation.eos_token_id
        pad = generation.pad_token_id
        return {
            "checkpoint_defaults_not_applied": _unapplied_generation_defaults(generation),
            "decoder_start_token_id": int(start),
            "eos_token_id": [int(i) for i in eos] if isinstance(eos, (list, tuple)) else int(eos),
            "pad_token_id": int(reference.tokenizer.pad_token_id if pad is None else pad),
            "max_length": int(generation.max_length),
            "vocab_size": int(config.vocab_size),
        }

    def write_task_files(self, reference: Seq2SeqReference, folder: Path) -> None:
        """Write ``references.npz`` (``engine.verification.references``): PyTorch's greedy output
        of the check set and, teacher-forced along it, each step's top-k logits and
        log-probabilities."""
        settings = self.generation_settings(reference)
        sources = reference.check_sources(include_empty=False)
        generated = reference.generate(sources, max_new_tokens=GREEDY_TOKENS).token_ids
        width = max(len(tokens) for tokens in generated)
        decoder_inputs = np.full((len(sources), width), settings["pad_token_id"], dtype=np.int64)
        decoder_inputs[:, 0] = settings["decoder_start_token_id"]
        token_ids = np.full((len(sources), width), -1, dtype=np.int64)
        for row, tokens in enumerate(generated):
            decoder_inputs[row, 1 : len(tokens)] = tokens[:-1]
            token_ids[row, : len(tokens)] = tokens
        logits = reference.decoder_logits(sources, decoder_inputs).astype(np.float64)
        top_logits, top_ids = topk_rows(logits)
        totals = logsumexp(logits)
        at_token = np.take_along_axis(logits, np.maximum(token_ids, 0)[..., None], axis=-1)[..., 0]
        token_logprobs = np.where(token_ids >= 0, at_token - totals, 0.0)
        arrays = {
            "texts": np.array(sources),
            "token_ids": token_ids,
            "lengths": np.array([len(tokens) for tokens in generated], dtype=np.int64),
            "decoder_input_ids": decoder_inputs,
            "sequence_scores": token_logprobs.sum(axis=1),
            "token_logprobs": token_logprobs.astype(np.float32),
            "topk_logits": top_logits.astype(np.float32),
            "topk_ids": top_ids.astype(np.int32),
            "logsumexp": totals.astype(np.float32),
        }
        write_references(folder, self.task, arrays)

    def check_parity(
        self, reference: Seq2SeqReference, artifact_dir: Path, atol: float
    ) -> ParityReport:
        """Encoder states, first-step logits and cached vs one-shot teacher-forced decoding."""
        return compare_seq2seq(exported_fp32(Seq2SeqLM, artifact_dir), reference, atol)


def compare_seq2seq(lm: Seq2SeqLM, reference: Seq2SeqReference, atol: float) -> ParityReport:
    """Compare a loaded engine seq2seq model with its PyTorch reference on the check set."""
    report = ParityReport(atol=atol)
    for pair in check_set_outputs(lm, reference):
        report.add(pair.name, pair.text, pair.reference, pair.candidate)
    return report


def check_set_outputs(lm: Seq2SeqLM, reference: Seq2SeqReference) -> list[OutputPair]:
    """Engine and PyTorch outputs on the check set, over unpadded positions only: the encoder's
    states (``encoder_pairs``), then the decoder's logits (``decoder_pairs``).

    Sources are the classifier check set: the empty text, a one-token text and one longer than
    the tokenizer's maximum, which T5 reads whole.
    """
    return encoder_pairs(lm, reference) + decoder_pairs(lm, reference)


def encoder_pairs(lm: Seq2SeqLM, reference: Seq2SeqReference) -> list[OutputPair]:
    """Encoder states on the check set at batch 1 and in one padded batch."""
    sources = reference.check_sources()
    pairs = []
    for index, text in enumerate(sources):
        hidden, mask = reference.encoder_states([text])
        ours = lm.encode([text]).last_hidden_state
        pairs.append(_masked_pair(f"encoder b1[{index}]", text, hidden[0], ours[0], mask[0]))
    hidden, mask = reference.encoder_states(sources)
    encoded = lm.encode(sources).last_hidden_state
    return pairs + _masked_pairs(f"encoder batch{len(sources)}", sources, hidden, encoded, mask)


def decoder_pairs(lm: Seq2SeqLM, reference: Seq2SeqReference) -> list[OutputPair]:
    """Decoder logits on the check set in one padded batch: the first decoder step,
    teacher-forced logits in one call, and the same targets decoded token by token through the
    KV cache (8+ steps). These are predictions; the encoder's states are not."""
    sources = reference.check_sources()
    targets = [PARITY_TARGETS[index % len(PARITY_TARGETS)] for index in range(len(sources))]
    batch = f"batch{len(sources)}"
    expected, target_mask = reference.target_logits(sources, targets)
    first = lm.generate(sources, max_new_tokens=1, output_logits=True, batch_size=len(sources))
    pairs = [
        OutputPair(f"first step {batch}[{index}]", text, expected[index, 0],
                   sequence.step_logits[0])
        for index, (text, sequence) in enumerate(zip(sources, first))
    ]
    for name, use_cache in (("teacher-forced", False), ("kv-cache decode", True)):
        ours = lm.logits(sources, targets, use_cache=use_cache).logits
        pairs += _masked_pairs(f"{name} {batch}", sources, expected, ours, target_mask)
    return pairs


def _masked_pairs(
    name: str, texts: list[str], reference: np.ndarray, candidate: np.ndarray, mask: np.ndarray
) -> list[OutputPair]:
    """One pair per batch item."""
    return [
        _masked_pair(f"{name}[{index}]", text, reference[index], candidate[index], mask[index])
        for index, text in enumerate(texts)
    ]


def _masked_pair(
    name: str, text: str, reference: np.ndarray, candidate: np.ndarray, mask: np.ndarray
) -> OutputPair:
    """The unpadded positions; after a length mismatch (the engine tokenized differently) the
    whole candidate is kept, and its shape fails the comparison."""
    valid = mask == 1
    same_length = candidate.shape[0] == reference.shape[0]
    return OutputPair(name, text, reference[valid], candidate[valid] if same_length else candidate)


# Settings a checkpoint's generation_config.json can carry that transformers' generate() applies
# when the caller does not override them, and that the engine's decoding does not implement.
_UNAPPLIED_SETTINGS = (
    "do_sample", "num_beams", "length_penalty", "min_length", "min_new_tokens",
    "no_repeat_ngram_size", "encoder_no_repeat_ngram_size", "repetition_penalty",
    "bad_words_ids", "suppress_tokens", "begin_suppress_tokens", "forced_bos_token_id",
    "forced_eos_token_id",
)


def _unapplied_generation_defaults(generation: Any) -> dict[str, Any]:
    """The checkpoint's generation settings that differ from transformers' defaults and that the
    engine does not apply, so it can say so instead of silently decoding differently."""
    defaults = type(generation)()
    return {
        name: getattr(generation, name)
        for name in _UNAPPLIED_SETTINGS
        if getattr(generation, name, None) != getattr(defaults, name, None)
    }
