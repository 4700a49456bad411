"""`onnx-engine demo`, the README's first command, passes end to end."""

from __future__ import annotations

from onnx_engine.cli import main
from onnx_engine.demo.semantic_search import MINILM_TITLE
from onnx_engine.demo.side_by_side import DEMO_SENTENCES, RANDOM_WEIGHTS_NOTE


def test_demo_shows_engine_and_pytorch_side_by_side(tmp_path, capsys):
    assert main(["demo", "--workdir", str(tmp_path), "-q"]) == 0
    out = capsys.readouterr().out
    assert RANDOM_WEIGHTS_NOTE in out
    for sentence in DEMO_SENTENCES:
        assert sentence in out
    assert "labels identical: True" in out
    assert "demo PASS" in out
    # The real-weights part: MiniLM held to sentence-transformers, then a judged search.
    assert MINILM_TITLE in out and "export parity vs SentenceTransformer.encode" in out
    assert "Simmer the tomato sauce" in out.split("query: 'How do I make pasta sauce?'")[1][:200]
