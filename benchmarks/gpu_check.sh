#!/usr/bin/env bash
# GPU check of the cupy backend, in one command on a machine with an NVIDIA GPU and CuPy (under 5 minutes):
# build, correctness against the CPU reference on fresh random inputs, kernel timings at 2048 and 3072 bits
# for 1,000 to 1,000,000 values; a short table is printed last. Full results go to $OUT (or the first
# argument, default ./gpu_check_results) as gpu_check.json and gpu_check.csv; further arguments go to
# benchmarks/gpu/gpu_check.py (--key-bits, --sizes, --budget-s, --check-count, --end-to-end-values).
#
# The package is imported from this checkout without installing it. If phe, gmpy2 and hypothesis import,
# the GPU cases of the pytest suite (tests/test_cuda_core.py, -k cupy) run first.
# tests/test_gpu_check.py runs this script in CI with a fake CuPy (tests/fake_cupy: the host harness).
set -euo pipefail
cd "$(dirname "$0")/.."
out_argument=""
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    out_argument="$1"
    shift
fi
out="${OUT:-${out_argument:-gpu_check_results}}"
mkdir -p "$out"

# dphe_bench.backends lives in backends/ (pyproject's package-dir): lay the package out as installed, ahead
# of anything already on PYTHONPATH. PYTHONSAFEPATH=1 keeps `python -m` from putting this checkout first on
# sys.path, where ./dphe_bench (without backends) would shadow the laid-out package.
shim="$(mktemp -d)"
trap 'rm -rf "$shim"' EXIT
cp -r dphe_bench "$shim/dphe_bench"
cp -r backends "$shim/dphe_bench/backends"
export PYTHONPATH="$shim${PYTHONPATH:+:$PYTHONPATH}" PYTHONSAFEPATH=1 PYTHONUNBUFFERED=1
python="${PYTHON:-python3}"
package="$("$python" -c 'import dphe_bench.backends as backends; print(backends.__file__)')"
case "$package" in
    "$shim"/*) ;;
    *) echo "dphe_bench.backends resolves to $package, not to the laid-out package in $shim" >&2; exit 1 ;;
esac

if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
fi
status=0
if "$python" -c "import phe, gmpy2, hypothesis, pytest" 2>/dev/null; then
    # NVRTC compiles six configurations on a cold kernel cache (about 35 s on the reviewer's host): room for
    # a slower one.
    timeout 240 "$python" -m pytest -q -p no:cacheprovider tests/test_cuda_core.py -k cupy 2>&1 \
        | tee "$out/pytest.log" || status=1
else
    echo "phe, gmpy2 or hypothesis missing: skipping the pytest GPU cases (the checks below still run)"
fi
"$python" benchmarks/gpu/gpu_check.py --out "$out" "$@" || status=1
exit "$status"
