"""``onnx-engine demo``: the end-to-end runs behind the README's first command."""
