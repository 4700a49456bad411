#!/usr/bin/env bash
# The whole CUDA check in one command, on a machine with an NVIDIA GPU and onnxruntime-gpu:
#   1. prerequisites (GPU, onnxruntime-gpu really running on it, torch CUDA, export toolchain);
#   2. the full-size built-in classifier and T5-small (random weights), exported once, with their
#      fp16 variants made and gated on CUDA (the manifest records checked_on: cuda);
#   3. the tests marked `cuda` (IO-binding parity and copy counts on the GPU, ...);
#   4. the benchmark: engine fp32/fp16 vs PyTorch eager fp32/fp16 on the same GPU, and the
#      per-step host<->device copies of IO-binding greedy and beam decoding;
# writing benchmarks/results/gpu-<gpu model>.{json,md} and gpu-cuda-tests.txt. Needs no package
# registry; README.md ("GPU check") lists the wheels to bring. Finishes within 6 minutes.
#
#   benchmarks/gpu_check.sh            # everything
#   benchmarks/gpu_check.sh --check    # prerequisites only: exit 0 when ready, 2 otherwise
#
# Environment: PYTHON (default: .venv/bin/python if present, else python3), GPU_CHECK_CACHE
# (default artifacts/bench: exported models are reused from there), GPU_CHECK_OUT (default
# benchmarks/results), GPU_CHECK_SECONDS (default 345: the time all stages share).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
cache=${GPU_CHECK_CACHE:-artifacts/bench}
out=${GPU_CHECK_OUT:-benchmarks/results}
deadline=$((SECONDS + ${GPU_CHECK_SECONDS:-345}))
check_only=0
for arg in "$@"; do
  case "$arg" in
    --check) check_only=1 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown argument '$arg' (use --check or nothing)" >&2; exit 2 ;;
  esac
done

left() { echo $((deadline - SECONDS > 1 ? deadline - SECONDS : 1)); }
stage() { echo; echo "== $* ($(left) s left)"; }

stage "prerequisites"
if ! "$PYTHON" -m onnx_engine.bench.gpu_prereqs; then
  echo "gpu_check: not ready: fix the MISSING lines above (README.md, 'GPU check'); nothing was run." >&2
  exit 2
fi
[[ $check_only == 1 ]] && exit 0

failed=()
stage "models and fp16 gates on CUDA"
paths=$(timeout "$(left)" "$PYTHON" -m onnx_engine.bench.gpu_bench prepare --cache-dir "$cache" | tail -1)
read -r classifier t5 <<<"$paths"
if [[ -z "${t5:-}" ]]; then
  echo "gpu_check: building the models or their fp16 variants failed (see above)." >&2
  exit 1
fi

stage "tests marked cuda"
mkdir -p "$out"
tests_budget=$(( $(left) > 200 ? $(left) - 150 : $(left) / 3 ))
timeout "$tests_budget" "$PYTHON" -m pytest tests -m cuda -q -rs -p no:cacheprovider \
  2>&1 | tee "$out/gpu-cuda-tests.txt"
[[ ${PIPESTATUS[0]} == 0 ]] || failed+=("tests marked cuda")

stage "benchmark and IO-binding copy counts"
budget=$(( ($(left) - 40) / 10 > 2 ? ($(left) - 40) / 10 : 2 ))  # per workload (7) + loading
timeout "$(left)" "$PYTHON" -m onnx_engine.bench.gpu_bench run "$classifier" "$t5" \
  --out "$out" --budget "$budget" || failed+=("benchmark")

if (( ${#failed[@]} )); then
  echo "gpu_check: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "gpu_check: done in ${SECONDS} s; results in $out/gpu-*"
