"""The ways of generating text with a T5-style model that the benchmark compares.

All decode with the settings' beams (1: greedy; ``length_penalty=1``, no early stopping) up to
``new_tokens`` tokens with the KV cache and stop a row at EOS, as ``transformers``' ``generate``
does; ``predictions`` returns the generated ids so the runner can count tokens (for tokens/s and
ms per token) and compare them between contenders. CTranslate2 lives in its own module.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from onnx_engine.bench.contenders.base import (
    Bf16Autocast,
    Contender,
    ContenderSettings,
    PipelineContender,
    TorchModelContender,
    engine_tokenizer,
    hf_tokenizer,
    ort_session,
    ort_session_options,
    pad_rows,
    torch_threads,
)
from onnx_engine.bench.contenders.ct2 import CTranslate2Seq2Seq
from onnx_engine.bench.contenders.generated_ids import eos_ids, trim_after_eos

_PAST, _PRESENT = "past_key_values.", "present."


class EngineSeq2Seq(Contender):
    """Ours, end to end: strings in, ``Seq2SeqLM.generate`` sequences (text and ids) out."""

    name = "engine"

    def load(self) -> None:
        from engine.tasks.text2text import DEFAULT_OPTIONS, Seq2SeqLM
        from onnx_engine.bench.variants import load_engine

        self.model = load_engine(Seq2SeqLM, DEFAULT_OPTIONS, self.settings)

    def run(self) -> Any:
        # Truncated at max_length as every other contender's tokenizer does: the check set's
        # over-long texts would otherwise be decoded from a different source.
        return self.model.generate(
            self.texts, max_new_tokens=self.settings.new_tokens, num_beams=self.settings.beams,
            length_penalty=1.0, early_stopping=False, batch_size=len(self.texts),
            truncation=True,
        )

    def predictions(self, output: Any) -> np.ndarray:
        return pad_rows([sequence.token_ids for sequence in output])


class OrtRawSeq2Seq(Contender):
    """A minimal NumPy greedy loop over the three bare sessions, on pre-tokenized inputs.

    The sessions do not spin, like the engine's seq2seq defaults: the loop alternates sessions,
    and a spinning one would steal the CPU from the next.
    """

    runtimes = ("onnxruntime",)

    name = "ort-raw"

    @classmethod
    def check_available(cls, settings: ContenderSettings) -> None:
        from onnx_engine.bench.errors import ContenderUnavailable

        super().check_available(settings)
        if settings.beams != 1:
            raise ContenderUnavailable(f"{cls.name} decodes greedily only, not {settings.beams} "
                                       "beams.")

    def load(self) -> None:
        from engine.manifest import ArtifactManifest

        graphs, threads = self.settings.graphs, self.settings.threads
        self.sessions = {
            role: ort_session(graphs[role], threads, spinning=False) for role in graphs
        }
        generation = ArtifactManifest.read(self.settings.artifact).generation
        eos = generation["eos_token_id"]
        self._eos = np.array(eos if isinstance(eos, list) else [eos], dtype=np.int64)
        self._start = int(generation["decoder_start_token_id"])
        self._pad = int(generation["pad_token_id"])
        self._tokenizer = engine_tokenizer(self.settings.artifact)

    def prepare(self, texts: Sequence[str]) -> None:
        encoded = self._tokenizer.encode(list(texts))
        self.input_ids, self.attention_mask = encoded.input_ids, encoded.attention_mask

    def run(self) -> Any:
        return self.decode(self.settings.new_tokens)[0]

    def cost_probes(self) -> dict[str, tuple[Path, dict[str, np.ndarray]]]:
        """Graph and feeds of the encoder, the first decoder step and a with-past step halfway
        through generation (its cache as long as the average step's), for counting FLOPs."""
        graphs, mask = self.settings.graphs, self.attention_mask
        encoder_feeds = {"input_ids": self.input_ids, "attention_mask": mask}
        (hidden,) = self.sessions["encoder"].run(None, encoder_feeds)
        start = np.full((len(mask), 1), self._start, np.int64)
        probes = {
            "encoder": (graphs["encoder"], encoder_feeds),
            "decoder": (graphs["decoder"], {
                "input_ids": start, "encoder_hidden_states": hidden, "encoder_attention_mask": mask,
            }),
        }
        _, step_feeds = self.decode(max(2, self.settings.new_tokens // 2 + 1))
        if step_feeds is not None:
            probes["decoder_with_past"] = (graphs["decoder_with_past"], step_feeds)
        return probes

    def decode(self, steps: int) -> tuple[np.ndarray, dict[str, np.ndarray] | None]:
        """Greedy ids ``[rows, <= steps]``, and the feeds of the last with-past step (or None)."""
        mask = self.attention_mask
        (hidden,) = self.sessions["encoder"].run(
            None, {"input_ids": self.input_ids, "attention_mask": mask}
        )
        rows = len(mask)
        decoder = self.sessions["decoder"]
        first = decoder.run(None, {
            "input_ids": np.full((rows, 1), self._start, np.int64),
            "encoder_hidden_states": hidden, "encoder_attention_mask": mask,
        })
        past = _pasts([node.name for node in decoder.get_outputs()], first)
        logits, generated, feeds = first[0], [], None
        finished = np.zeros(rows, dtype=bool)
        with_past = self.sessions["decoder_with_past"]
        output_names = [node.name for node in with_past.get_outputs()]
        for step in range(steps):
            next_ids = np.where(finished, self._pad, logits[:, -1].argmax(-1))
            generated.append(next_ids)
            finished |= np.isin(next_ids, self._eos)
            if finished.all() or step == steps - 1:
                break
            feeds = {"input_ids": next_ids[:, None], "encoder_attention_mask": mask, **past}
            outputs = with_past.run(None, feeds)
            logits = outputs[0]
            past.update(_pasts(output_names, outputs))
        return np.stack(generated, axis=1), feeds

    def predictions(self, output: Any) -> np.ndarray:
        return trim_after_eos(output, self._eos)


def _pasts(names: list[str], outputs: list[np.ndarray]) -> dict[str, np.ndarray]:
    return {_PAST + n[len(_PRESENT):]: a for n, a in zip(names, outputs) if n.startswith(_PRESENT)}


class _Generate:
    """Shared by the PyTorch and Optimum contenders: both are ``generate`` with a tokenizer."""

    def _generate(self, batch: Any) -> Any:
        with self._torch.inference_mode():
            return self.model.generate(
                **batch, max_new_tokens=self.settings.new_tokens, num_beams=self.settings.beams,
                length_penalty=1.0, early_stopping=False, do_sample=False, use_cache=True,
            )

    def predictions(self, output: Any) -> np.ndarray:
        # Drop the decoder start token; rows that ended early are padded after their EOS.
        return trim_after_eos(output.numpy()[:, 1:], eos_ids(self.model.generation_config))


class PyTorchSeq2Seq(_Generate, TorchModelContender):
    """``model.generate`` with the KV cache on pre-tokenized inputs."""

    auto_class = "AutoModelForSeq2SeqLM"

    def run(self) -> Any:
        return self._generate(self._batch)


class PyTorchBf16Seq2Seq(Bf16Autocast, PyTorchSeq2Seq):
    """``model.generate`` under bf16 autocast."""


class OptimumSeq2Seq(_Generate, Contender):
    """``ORTModelForSeq2SeqLM.generate`` on the same three graphs, strings in and out."""

    name = "optimum"
    requires = ("torch", "transformers", "optimum.onnxruntime")

    def load(self) -> None:
        self._torch = torch_threads(self.settings.threads)
        import transformers
        from optimum.onnxruntime import ORTModelForSeq2SeqLM

        graphs = self.settings.graphs
        self.model = ORTModelForSeq2SeqLM.from_pretrained(
            graphs["encoder"].parent, encoder_file_name=graphs["encoder"].name,
            decoder_file_name=graphs["decoder"].name,
            decoder_with_past_file_name=graphs["decoder_with_past"].name,
            use_cache=True, use_merged=False, provider="CPUExecutionProvider",
            config=transformers.AutoConfig.from_pretrained(self.settings.artifact),
            session_options=ort_session_options(self.settings.threads),
        )
        self._tokenizer = hf_tokenizer(self.settings)

    def run(self) -> Any:
        batch = self._tokenizer(self.texts, padding=True, truncation=True, return_tensors="pt")
        output = self._generate(batch)
        self._tokenizer.batch_decode(output, skip_special_tokens=True)
        return output


class PipelineSeq2Seq(PipelineContender):
    """``transformers.pipeline("text2text-generation")`` end to end."""

    pipeline_task = "text2text-generation"

    def run(self) -> Any:
        # Ids instead of text so tokens can be counted; decoding 32 ids to text takes microseconds.
        return self.pipe(
            self.texts, max_new_tokens=self.settings.new_tokens, num_beams=self.settings.beams,
            length_penalty=1.0, early_stopping=False, do_sample=False,
            batch_size=len(self.texts), return_tensors=True,
        )

    def predictions(self, output: Any) -> np.ndarray:
        ids = pad_rows([[int(i) for i in item["generated_token_ids"][1:]] for item in output])
        return trim_after_eos(ids, eos_ids(self.pipe.model.generation_config))


SEQ2SEQ_CONTENDERS: tuple[type[Contender], ...] = (
    EngineSeq2Seq, OrtRawSeq2Seq, PyTorchSeq2Seq, PyTorchBf16Seq2Seq, PipelineSeq2Seq,
    OptimumSeq2Seq, CTranslate2Seq2Seq,
)
