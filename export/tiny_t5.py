"""Seeded random-weight T5 checkpoints with a locally trained SentencePiece tokenizer.

Without a model hub, the tests, the demo and the benchmarks build their T5 models here: a
SentencePiece Unigram model trained on a small built-in corpus (ids laid out like T5's: pad 0,
eos 1, unk 2, plus the 100 ``<extra_id_*>`` sentinels) and a ``T5ForConditionalGeneration`` with
weights drawn from a fixed seed. Two flavours exist, as in the real checkpoints: original T5 (ReLU
feed-forward, LM head tied to the embeddings) and T5 v1.1 / flan-T5 (gated-GELU, untied head).
The weights are RANDOM: generated text is meaningless, but engine and PyTorch must agree on it.
"""

from __future__ import annotations

import io
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from export.check_set import SENTENCES, filler_text
from export.dependencies import require

T5_VARIANTS = ("t5", "t5-v1_1")
T5_SMALL_VOCAB_SIZE = 32128  # t5-small's embedding rows (its tokenizer has 32100 tokens)

_CORPUS = (
    *SENTENCES,
    "translate English to German: The cat sat on the mat.",
    "translate English to French: The house is wonderful and the garden is green.",
    "summarize: The committee met on Tuesday and agreed to publish the report next month.",
    "cola sentence: The course is jumping well.",
    "question: What is the capital of France? context: Paris is the capital of France.",
    "Das Haus ist wunderbar. Die Katze saß auf der Matte. Le chat est assis sur le tapis.",
    "Numbers 0 1 2 3 4 5 6 7 8 9 10 100 2024, symbols: . , ; : ! ? ' \" ( ) - / % & @ #",
    filler_text(120),
)


@dataclass(frozen=True)
class TinyT5Spec:
    """Shape of a T5 checkpoint; the defaults make a model small enough for unit tests.

    ``initializer_factor`` stays at T5's 1.0: at 2.0 the random attention is so sharp that ONNX
    Runtime and PyTorch drift apart by 1e-2 in the logits (float32 rounding amplified), while at
    1.0 they agree within 2e-5 and greedy choices are still decided by margins above 2e-3.
    ``vocab_size`` 0 means "as many rows as the tokenizer has tokens". ``eos_token_ids`` beyond
    T5's ``</s>`` (1) go into the generation config, as multi-EOS models do: a token the random
    model emits often makes its generations end early, which beam search tests need.
    """

    variant: str = "t5"
    d_model: int = 32
    d_kv: int = 8
    d_ff: int = 64
    num_layers: int = 2
    num_decoder_layers: int = 2
    num_heads: int = 4
    vocab_size: int = 0
    sentencepiece_vocab_size: int = 300
    initializer_factor: float = 1.0
    eos_token_ids: tuple[int, ...] = (1,)
    seed: int = 0


FULL_SIZE_T5_SMALL = TinyT5Spec(
    d_model=512,
    d_kv=64,
    d_ff=2048,
    num_layers=6,
    num_decoder_layers=6,
    num_heads=8,
    vocab_size=T5_SMALL_VOCAB_SIZE,
)


def train_sentencepiece(output: Path, vocab_size: int = 300) -> Path:
    """Train a SentencePiece Unigram model on the built-in corpus; returns ``spiece.model``."""
    sentencepiece = require("sentencepiece")
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(list(_CORPUS) * 4),
        model_writer=model,
        model_type="unigram",
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        character_coverage=1.0,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    path = Path(output) / "spiece.model"
    path.write_bytes(model.getvalue())
    return path


def build_t5_tokenizer(folder: Path, vocab_size: int = 300):
    """A ``T5TokenizerFast`` over a freshly trained ``spiece.model`` in ``folder``.

    ``add_prefix_space=True, legacy=True`` keep the "▁" on the first word, as sentencepiece itself
    and the real T5 tokenizers do (without them transformers 4.57 drops it).
    """
    transformers = require("transformers")
    vocab_file = train_sentencepiece(folder, vocab_size)
    tokenizer = transformers.T5TokenizerFast(
        vocab_file=str(vocab_file), add_prefix_space=True, legacy=True
    )
    tokenizer.model_max_length = 512
    return tokenizer


def _config(spec: TinyT5Spec, vocab_size: int):
    transformers = require("transformers")
    gated = spec.variant == "t5-v1_1"
    return transformers.T5Config(
        vocab_size=vocab_size,
        d_model=spec.d_model,
        d_kv=spec.d_kv,
        d_ff=spec.d_ff,
        num_layers=spec.num_layers,
        num_decoder_layers=spec.num_decoder_layers,
        num_heads=spec.num_heads,
        feed_forward_proj="gated-gelu" if gated else "relu",
        tie_word_embeddings=not gated,
        initializer_factor=spec.initializer_factor,
        dropout_rate=0.0,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,  # T5 starts decoding from the pad token
    )


def build_tiny_t5(output: Path, spec: TinyT5Spec = TinyT5Spec()) -> Path:
    """Write a seeded random-weight ``T5ForConditionalGeneration`` checkpoint to ``output``.

    Raises:
        ValueError: ``spec.variant`` is not one of ``T5_VARIANTS``.
    """
    if spec.variant not in T5_VARIANTS:
        raise ValueError(f"variant must be one of {T5_VARIANTS}, got {spec.variant!r}")
    torch = require("torch")
    transformers = require("transformers")
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer = build_t5_tokenizer(Path(scratch), spec.sentencepiece_vocab_size)
        tokenizer.save_pretrained(str(output))
    _drop_prefix_space_flag(output / "tokenizer_config.json")
    config = _config(spec, vocab_size=max(spec.vocab_size, len(tokenizer)))
    torch.manual_seed(spec.seed)
    model = transformers.T5ForConditionalGeneration(config)
    model.eval()
    eos = list(spec.eos_token_ids)
    model.generation_config.eos_token_id = eos[0] if len(eos) == 1 else eos
    model.save_pretrained(str(output))
    return output


def _drop_prefix_space_flag(config_path: Path) -> None:
    """Save the tokenizer like a real T5 checkpoint: without ``add_prefix_space``.

    tokenizer.json already prepends the "▁" (Metaspace, ``prepend_scheme: always``); left in
    tokenizer_config.json, the flag makes every ``AutoTokenizer`` load re-convert spiece.model and
    print a notice about it. The ids are the same either way.
    """
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config.pop("add_prefix_space", None)
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
