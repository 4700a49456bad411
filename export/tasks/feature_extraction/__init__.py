"""Sentence-embedding models (task ``feature-extraction``): export and variant gates."""
