"""Text-to-text generation (T5-style encoder-decoders): the model, its graphs, KV cache and search."""
