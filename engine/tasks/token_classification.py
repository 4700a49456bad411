"""Token classification (NER) from an exported artifact, shaped exactly like the HF pipeline.

``transformers.pipeline("token-classification")`` does its work after the model in NumPy:
softmax per token, then ``gather_pre_entities`` (tokens with offsets, a subword flag),
``aggregate_words`` (first / average / max) and ``group_entities`` (B-/I- tags). This module is
that post-processing, ported line by line with the ``tokenizers`` library in place of the
transformers tokenizer: the same vocabulary gives the token strings, the same decoder joins them
(``convert_tokens_to_string``), the same tokenizer model says whether subwords carry a prefix.
Quirks are kept on purpose (a word of word-aggregated tokens is decoded twice, as the pipeline
does), since the contract is equality with the pipeline, not a better NER.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.checks import check_choice
from engine.errors import InputError
from engine.numerics import softmax
from engine.options import RuntimeOptions
from engine.tasks.base import TextGraphModel, text_timing_calls
from engine.tasks.classification import checked_id2label
from engine.tokenization import EncodedBatch, EncodedRow, as_text_list, check_batch_size
from engine.variants.records import VariantFigures
from engine.verification.gate_figures import OutputPair, measure_figures

TASK_TOKEN_CLASSIFICATION = "token-classification"

AGGREGATION_STRATEGIES = ("none", "simple", "first", "average", "max")
DEFAULT_IGNORE_LABELS = ("O",)


@dataclass(frozen=True)
class TokenLogits:
    """One text as the model read it: its tokens (special ones included) and their logits.

    ``offsets`` are character spans into ``text``; ``special`` marks [CLS]/[SEP]/<s>-style
    tokens, which the pipeline never reports.
    """

    text: str
    ids: np.ndarray
    offsets: np.ndarray
    special: np.ndarray
    logits: np.ndarray


@dataclass(frozen=True)
class _Piece:
    """A token as ``gather_pre_entities`` describes it, before aggregation."""

    word: str
    scores: np.ndarray
    start: int
    end: int
    index: int
    is_subword: bool


class TokenClassifier(TextGraphModel):
    """A token classifier (NER, POS) on ONNX Runtime with tokenizers and NumPy only.

    ``ner(texts, aggregation_strategy=...)`` returns what ``transformers.pipeline(
    "token-classification", aggregation_strategy=...)`` returns; ``token_logits`` gives the
    per-token arrays behind it. Texts over the model's maximum length are truncated there, as
    the pipeline truncates them (entities past the cut are not found).
    """

    task = TASK_TOKEN_CLASSIFICATION

    def _assemble(self, options: RuntimeOptions) -> None:
        super()._assemble(options)
        self.id2label = checked_id2label(self.artifact.config(), self.artifact)
        backend = self.tokenizer.backend
        # What the pipeline reads off its tokenizer: whether subwords carry a prefix ("##"),
        # and which id is the unknown token (reported as the text it covers).
        self._word_aware = bool(getattr(backend.model, "continuing_subword_prefix", None))
        self._unk_id = _unk_id(backend)

    def timing_calls(self) -> dict[str, Callable[[], object]]:
        return text_timing_calls(self.token_logits)

    def reference_figures(self, stored: Mapping[str, np.ndarray]) -> VariantFigures:
        """This variant's gate figures against the stored PyTorch logits (``verify``): one
        prediction per token of every stored text (``references.npz``: ``texts``, ``lengths``,
        padded ``logits``)."""
        texts = [str(text) for text in stored["texts"]]
        theirs = [stored["logits"][row, : int(length)]
                  for row, length in enumerate(stored["lengths"])]
        ours = [tokens.logits for tokens in self.token_logits(texts, batch_size=len(texts))]
        return measure_figures(token_pairs(texts, theirs, ours), softmax)

    @property
    def labels(self) -> list[str]:
        return [self.id2label[index] for index in sorted(self.id2label)]

    def token_logits(self, texts: str | Sequence[str], batch_size: int = 32) -> list[TokenLogits]:
        """Each text's tokens and their raw logits ``[tokens, labels]``, in input order.

        Texts are batched by length (padding is cut off again per text) and truncated at the
        model's maximum length.

        Raises:
            InputError: not a string or a non-empty list of strings, or a bad ``batch_size``.
        """
        items, _ = as_text_list(texts)
        batches = self.run_batches(items, check_batch_size(batch_size), "logits")
        return _token_logits(batches, len(items))

    def token_logits_encoded(
        self, rows: Sequence[EncodedRow], batch_size: int = 32
    ) -> list[TokenLogits]:
        """:meth:`token_logits` of texts already encoded (``tokenizer.encode_rows``, or a
        server's queue, which tokenizes each text once)."""
        return _token_logits(self.run_encoded(rows, check_batch_size(batch_size), "logits"),
                             len(rows))

    def __call__(
        self,
        texts: str | Sequence[str],
        aggregation_strategy: str = "none",
        ignore_labels: Sequence[str] | None = None,
        batch_size: int = 32,
    ) -> list[Any]:
        """Entities like ``pipeline("token-classification")``: a list of dicts for one text,
        a list of such lists for a list of texts.

        ``aggregation_strategy`` ``none`` gives one ``{"entity", "score", "index", "word",
        "start", "end"}`` per token; the others group tokens into ``{"entity_group", "score",
        "word", "start", "end"}``. Entities labelled one of ``ignore_labels`` (default
        ``["O"]``) are dropped.

        Raises:
            InputError: bad texts, an unknown strategy or ``ignore_labels`` not strings.
        """
        strategy = check_strategy(aggregation_strategy)
        ignored = check_ignore_labels(ignore_labels)
        _, single = as_text_list(texts)
        found = [self.entities(tokens, strategy, ignored)
                 for tokens in self.token_logits(texts, batch_size)]
        return found[0] if single else found

    def entities(
        self,
        tokens: TokenLogits,
        strategy: str,
        ignore_labels: Sequence[str] = DEFAULT_IGNORE_LABELS,
    ) -> list[dict[str, Any]]:
        """The pipeline's ``postprocess`` of one text (``strategy`` already checked)."""
        scores = softmax(tokens.logits.astype(np.float32))
        pieces = self._pieces(tokens, scores)
        if strategy in ("none", "simple"):
            found = self._token_entities(pieces, scores)
        else:
            found = self._word_entities(pieces, strategy)
        if strategy != "none":
            found = self._grouped(found)
        return [
            _public(entity) for entity in found
            if entity.get("entity") not in ignore_labels
            and entity.get("entity_group") not in ignore_labels
        ]

    # -- the pipeline's gather_pre_entities --
    def _pieces(self, tokens: TokenLogits, scores: np.ndarray) -> list[_Piece]:
        backend = self.tokenizer.backend
        text = tokens.text
        pieces = []
        # Python lists: indexing NumPy arrays one token at a time costs more than the work.
        rows = zip(tokens.ids.tolist(), tokens.offsets.tolist(), tokens.special.tolist(), scores)
        for index, (token_id, (start, end), special, token_scores) in enumerate(rows):
            if special:
                continue
            word = backend.id_to_token(token_id)
            word_ref = text[start:end]
            if self._word_aware:  # "##ing" is longer than the "ing" it spans
                is_subword = len(word) != len(word_ref)
            else:  # the pipeline's fallback: glued to the character before it
                is_subword = start > 0 and " " not in text[start - 1 : start + 1]
            if token_id == self._unk_id:
                word, is_subword = word_ref, False
            pieces.append(_Piece(word, token_scores, start, end, index, is_subword))
        return pieces

    def _token_entities(self, pieces: list[_Piece], scores: np.ndarray) -> list[dict[str, Any]]:
        """One entity per piece: its best label (the first of equal scores, as argmax)."""
        best = scores.argmax(axis=-1)
        best_scores = scores[np.arange(len(scores)), best]
        labels = [self.id2label[label] for label in best.tolist()]
        return [{"entity": labels[piece.index], "score": best_scores[piece.index],
                 "index": piece.index, "word": piece.word, "start": piece.start,
                 "end": piece.end} for piece in pieces]

    # -- aggregate_words / aggregate_word --
    def _word_entities(self, pieces: list[_Piece], strategy: str) -> list[dict[str, Any]]:
        words: list[list[_Piece]] = []
        for piece in pieces:
            if words and piece.is_subword:
                words[-1].append(piece)
            else:
                words.append([piece])
        return [self._word_entity(word, strategy) for word in words]

    def _word_entity(self, pieces: list[_Piece], strategy: str) -> dict[str, Any]:
        if strategy == "average":
            scores = np.nanmean(np.stack([piece.scores for piece in pieces]), axis=0)
        elif strategy == "max":
            scores = max(pieces, key=lambda piece: piece.scores.max()).scores
        else:
            scores = pieces[0].scores
        best = int(scores.argmax())
        return {"entity": self.id2label[best], "score": scores[best],
                "word": self.tokens_to_string([piece.word for piece in pieces]),
                "start": pieces[0].start, "end": pieces[-1].end}

    # -- group_entities / group_sub_entities --
    def _grouped(self, entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
        groups: list[list[dict[str, Any]]] = []
        for entity in entities:
            if groups:
                bi, tag = _tag(entity["entity"])
                _, last_tag = _tag(groups[-1][-1]["entity"])
                if tag == last_tag and bi != "B":
                    groups[-1].append(entity)
                    continue
            groups.append([entity])
        return [self._group(group) for group in groups]

    def _group(self, entities: list[dict[str, Any]]) -> dict[str, Any]:
        score = np.mean(np.nanmean([entity["score"] for entity in entities]))
        return {"entity_group": entities[0]["entity"].split("-", 1)[-1], "score": score,
                "word": self.tokens_to_string([entity["word"] for entity in entities]),
                "start": entities[0]["start"], "end": entities[-1]["end"]}

    def tokens_to_string(self, tokens: list[str]) -> str:
        """Tokens joined as transformers' fast tokenizers join them (their decoder)."""
        decoder = self.tokenizer.backend.decoder
        return decoder.decode(tokens) if decoder is not None else " ".join(tokens)


def _token_logits(
    batches: Iterable[tuple[list[int], EncodedBatch, np.ndarray]], count: int
) -> list[TokenLogits]:
    """Each text's tokens and logits, in input order, from the batches of a run (padding cut
    off again per text)."""
    results: list[TokenLogits | None] = [None] * count
    for chunk, encoded, logits in batches:
        for row, (index, source) in enumerate(zip(chunk, encoded.rows)):
            encoding = source.encoding
            results[index] = TokenLogits(
                text=str(source.text),
                ids=source.ids,
                offsets=np.array(encoding.offsets, dtype=np.int64).reshape(-1, 2),
                special=np.array(encoding.special_tokens_mask, dtype=bool),
                logits=logits[row, : source.tokens],
            )
    return results  # type: ignore[return-value]


def token_pairs(
    texts: Sequence[str], reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]
) -> list[OutputPair]:
    """One pair per token of each text (a row is one label prediction), so a gate's agreement
    is per-token agreement; a text whose token count differs is one failed pair."""
    pairs = []
    for row, (text, theirs, ours) in enumerate(zip(texts, reference, candidate)):
        if theirs.shape != ours.shape:
            pairs.append(OutputPair(f"text[{row}]", text, theirs, ours))
            continue
        pairs += [OutputPair(f"text[{row}] token {position}", text, theirs[position],
                             ours[position]) for position in range(len(theirs))]
    return pairs


def _tag(label: str) -> tuple[str, str]:
    """``("B" | "I", tag)`` of a label; a label without B-/I- continues (``I``), as in the
    pipeline's ``get_tag``."""
    if label.startswith(("B-", "I-")):
        return label[0], label[2:]
    return "I", label


def _unk_id(backend: Any) -> int | None:
    """The id of the unknown token of the tokenizer model (WordPiece/BPE name it, Unigram
    numbers it), or None when it has none."""
    model = json.loads(backend.to_str()).get("model", {})
    if model.get("unk_token") is not None:
        return backend.token_to_id(model["unk_token"])
    return model.get("unk_id")


def _public(entity: dict[str, Any]) -> dict[str, Any]:
    """The entity with NumPy scalars as Python numbers (JSON-ready), keys in the same order."""
    return {key: float(value) if key == "score" else value for key, value in entity.items()}


def check_strategy(strategy: object) -> str:
    """``strategy`` lower-cased (the pipeline takes any case), if it is one of the five.

    Raises:
        InputError: anything else; the message names the choices.
    """
    return check_choice("aggregation_strategy", strategy, AGGREGATION_STRATEGIES)


def check_ignore_labels(labels: object) -> tuple[str, ...]:
    """The labels to drop: ``None`` is the pipeline's default ``["O"]``.

    Raises:
        InputError: not a list of strings.
    """
    if labels is None:
        return DEFAULT_IGNORE_LABELS
    if isinstance(labels, (list, tuple)) and all(isinstance(label, str) for label in labels):
        return tuple(labels)
    raise InputError(f"ignore_labels must be a list of label strings, got {labels!r:.60}.")
