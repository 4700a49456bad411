"""The machinery of Seq2SeqLM (engine.tasks.text2text): its graphs, KV cache, decoding, search."""
