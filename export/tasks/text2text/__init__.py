"""T5 (task ``text2text-generation``): export and variant gates."""
