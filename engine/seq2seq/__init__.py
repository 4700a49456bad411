"""Text-to-text generation (T5-style encoder-decoders): the model, graphs, KV cache, search."""
