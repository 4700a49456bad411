# The README's two commands: `make demo` and `make test`. Both create .venv and install into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint install bench clean grpc-stubs

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# --no-compile: byte-compiling every installed file (torch, ray, transformers) costs a minute of
# CPU at install; Python compiles the modules actually imported on first use instead.
install: $(BIN)/python
	$(BIN)/python -m pip install -q --no-compile -c constraints.txt -e ".[cpu,openvino,export,dev,bench,serve,ray]"

demo: install
	$(BIN)/onnx-engine demo

# The test command lints and type-checks first: ruff (pyproject [tool.ruff]) and mypy on engine/.
test: install lint
	$(BIN)/python -m pytest tests -n 2 --dist loadfile

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: install
	$(BIN)/onnx-engine bench --json benchmarks/results/latest.json

# The Open Inference Protocol's compiled descriptor set, committed beside its .proto (the test
# tests/test_serve_grpc.py::test_committed_stubs_are_what_grpc_tools_generates keeps them equal);
# grpc_proto/messages.py builds the message classes from it in a private descriptor pool.
GRPC_PROTO := onnx_engine/serving/grpc_proto/grpc_predict_v2.proto
grpc-stubs: install
	$(BIN)/python -m grpc_tools.protoc -I . --descriptor_set_out=$(GRPC_PROTO:.proto=.desc) $(GRPC_PROTO)

clean:
	rm -rf $(VENV) build *.egg-info
