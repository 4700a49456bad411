"""Optimized variants of an artifact: their records, which one to run, and its sessions."""
