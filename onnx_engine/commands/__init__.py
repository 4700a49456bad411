"""One module per ``onnx-engine`` subcommand."""
