"""Torch-free verification: variants re-checked on this machine against stored references."""
