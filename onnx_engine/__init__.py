"""The ``onnx-engine`` command line: argument parsing and dispatch to ``engine`` and ``export``.

Subcommands that need torch (export, verify, demo, bench) import the export side lazily, so the
runtime subcommands work in an install without torch.
"""
