#!/usr/bin/env bash
# The aarch64 check in one command, on an x86-64 Debian/Ubuntu machine where you are root:
#   1. installs Debian's debootstrap and qemu-user-static when missing (apt-get);
#   2. builds an arm64 Debian root once (debootstrap --foreign --variant=minbase, python3
#      included; the packages are unpacked with dpkg-deb, so no binfmt_misc registration and no
#      second stage are needed) and caches it in ~/.cache/onnx-engine/arm64-root;
#   3. gives it a plausible /proc/cpuinfo and /sys/devices/system/cpu/{possible,present}: ONNX
#      Runtime's CPU detection crashes at import under qemu-user without them;
#   4. installs the runtime-only extra (`onnx-engine[cpu]`: onnxruntime, numpy, tokenizers, no
#      torch) into the root from the manylinux aarch64 wheels, at the host's versions;
#   5. exports on x86-64 the tiny seeded classifier, T5 and embedding models, each with an int8
#      variant (cached in artifacts/arm64);
#   6. runs on x86-64 and on aarch64 (two emulated CPU models, see ARM64_CPUS): torch-free `verify`, every passed variant and `auto` through the
#      engine, and `classify` / `generate` / `embed`; then compares them
#      (benchmarks/arm64_check.py) and writes benchmarks/results/arm64-check.md.
# Emulated timings say nothing about speed: none is reported. Takes 3-6 minutes (the first run
# more, for the root). Not part of CI.
#
#   benchmarks/arm64_check.sh
#
# Environment: PYTHON (default .venv/bin/python if present, else python3; needs the export
# extra), ARM64_ROOT (default ~/.cache/onnx-engine/arm64-root), ARM64_CHECK_CACHE (default
# artifacts/arm64), ARM64_MIRROR (default http://deb.debian.org/debian), ARM64_SUITE
# (default bookworm: its python3 is 3.11, the wheels' ABI below), ARM64_CPUS (qemu CPU models
# to run on, default "neoverse-n1 max": NEON + dot product, and max = + SVE, i8mm, bf16).
set -euo pipefail
root_dir=$(cd "$(dirname "$0")/.." && pwd)
cd "$root_dir"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$root_dir${PYTHONPATH:+:$PYTHONPATH}"
arm_root=${ARM64_ROOT:-$HOME/.cache/onnx-engine/arm64-root}
cache=${ARM64_CHECK_CACHE:-artifacts/arm64}
mirror=${ARM64_MIRROR:-http://deb.debian.org/debian}
suite=${ARM64_SUITE:-bookworm}
arm_cpus=${ARM64_CPUS:-neoverse-n1 max}
out=benchmarks/results/arm64-check.md
case "${1:-}" in
  -h|--help) sed -n "2,27p" "$0"; exit 0 ;;
  "") ;;
  *) echo "arm64_check: unknown argument '$1' (it takes none)" >&2; exit 2 ;;
esac
stage() { echo; echo "== $* (${SECONDS} s)"; }

stage "host tools"
missing=()
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
if (( ${#missing[@]} )); then
  if [[ $(id -u) != 0 ]]; then
    echo "arm64_check: needs ${missing[*]}: run as root, or 'sudo apt-get install ${missing[*]}'." >&2
    exit 2
  fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
qemu=$(command -v qemu-aarch64-static)
"$qemu" --version | head -1

stage "arm64 Debian root ($arm_root)"
if [[ ! -f "$arm_root/.onnx-engine-root" ]]; then
  partial="$arm_root.partial"
  rm -rf "$partial"
  mkdir -p "$(dirname "$arm_root")"
  debootstrap --arch=arm64 --foreign --variant=minbase --include=python3 "$suite" "$partial" "$mirror"
  # The first stage unpacks only the required packages; unpack the rest (python3 and its
  # libraries) the same way. Maintainer scripts do not run: python3 needs none of them.
  for deb in "$partial"/var/cache/apt/archives/*.deb; do dpkg-deb -x "$deb" "$partial"; done
  rm -rf "$arm_root"
  mv "$partial" "$arm_root"
  echo "$suite arm64 minbase + python3" > "$arm_root/.onnx-engine-root"
else
  echo "cached ($(cat "$arm_root/.onnx-engine-root"))"
fi
"$PYTHON" benchmarks/arm64_check.py cpu "$arm_root" --cores "$(nproc)"
arm_python() {
  # cd to / so that the emulated Python does not import the repository's own engine/ (cwd is
  # first on sys.path); qemu opens paths inside the root first, then the host's.
  (cd / && ARM64_CHECK_EMULATED=1 PYTHONPATH=/opt/onnx-engine "$qemu" -L "$arm_root" \
    "$arm_root/usr/bin/python3" "$@")
}
arm_python -c 'import platform, sys; print("aarch64 root:", platform.machine(), sys.version.split()[0])'

stage "runtime-only install into the root (aarch64 wheels)"
pins=$("$PYTHON" - <<'EOF'
from importlib.metadata import version
print(" ".join(f"{name}=={version(name)}" for name in ("onnxruntime", "numpy", "tokenizers")))
EOF
)
wheels=$(mktemp -d)
trap 'rm -rf "$wheels"' EXIT
"$PYTHON" -m pip wheel --no-deps -q -w "$wheels" .
rm -rf "$arm_root/opt/onnx-engine"
# pip on the host fetches the aarch64 wheels (--platform): nothing is built, and pip needs no
# emulation. The root's Python is bookworm's 3.11.
"$PYTHON" -m pip install -q --no-warn-conflicts --target "$arm_root/opt/onnx-engine" \
  --platform manylinux_2_28_aarch64 --platform manylinux_2_17_aarch64 \
  --platform manylinux2014_aarch64 --python-version 3.11 --implementation cp --abi cp311 \
  --only-binary=:all: "$(ls "$wheels"/*.whl)[cpu]" $pins 2>&1 | grep -v "^$" || true
arm_python -c '
import importlib.util, onnxruntime, numpy, tokenizers
assert importlib.util.find_spec("torch") is None, "torch must not be in the runtime-only root"
print("aarch64:", "onnxruntime", onnxruntime.__version__, "numpy", numpy.__version__,
      "tokenizers", tokenizers.__version__, onnxruntime.get_available_providers())'

stage "export on x86-64 (tiny classifier, T5, embeddings; int8 each)"
OMP_WAIT_POLICY=PASSIVE "$PYTHON" benchmarks/arm64_check.py prepare "$cache"

run_dir="$cache/run"
mkdir -p "$run_dir"
run_dir=$(cd "$run_dir" && pwd)
cache=$(cd "$cache" && pwd)
stage "x86-64 run"
"$PYTHON" benchmarks/arm64_check.py outputs "$cache" "$run_dir/x86"
arm_runs=()
for cpu in $arm_cpus; do
  stage "aarch64 run, emulated CPU model '$cpu'"
  "$PYTHON" benchmarks/arm64_check.py cpu "$arm_root" --cores "$(nproc)" --model "$cpu" >/dev/null
  QEMU_CPU=$cpu arm_python "$root_dir/benchmarks/arm64_check.py" outputs "$cache" "$run_dir/arm-$cpu"
  arm_runs+=("$run_dir/arm-$cpu")
done

stage "report"
ARM64_CHECK_CACHE="$cache" "$PYTHON" benchmarks/arm64_check.py report "$run_dir/x86" "$out" \
  "${arm_runs[@]}" --seconds "$SECONDS"
echo "arm64_check: done in ${SECONDS} s; results in $out"
