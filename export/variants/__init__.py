"""Optimized variants of an exported artifact: how they are built (fusion, int8, fp16), checked
against PyTorch, gated, timed and written (``export.variants.optimize`` drives them)."""
