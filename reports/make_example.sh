#!/usr/bin/env bash
# Regenerates reports/example/ from scratch: about 30 minutes on 2 idle cores (see reports/README.md for the
# measured time of each step). Run from anywhere in the repository, in an environment with
#   pip install -e ".[all]"
# (sweeps need python-paillier, the backends numba and dask, HEU its sf-heu wheel, asv the bench extra).
# Every step prints its own wall time; all results land in reports/example/results/, the report next to them.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=reports/example
RESULTS=$OUT/results
KEY=2048
# Each backend's fastest configuration on this 2-core machine (the speed-up sweep below measures them all).
FAST=(gmpy2:obfuscation=djn multiprocessing:obfuscation=djn,workers=2 dask:obfuscation=djn,workers=2
      numba:obfuscation=djn,threads=2)
FASTEST=numba:obfuscation=djn,threads=2

for tool in dphe-bench asv; do
    command -v "$tool" >/dev/null || { echo "make_example.sh: $tool not found; pip install -e '.[all]'" >&2; exit 2; }
done
BACKENDS=$(dphe-bench backends)
for backend in gmpy2 multiprocessing dask numba; do
    grep -Eq "^$backend +available" <<<"$BACKENDS" || { echo "make_example.sh: backend $backend does not run here" >&2; exit 2; }
done

step() { echo; echo "== $*"; STEP_START=$SECONDS; }
done_step() { echo "   ($(( SECONDS - STEP_START )) s)"; }
backend_flags() { for b in "$@"; do printf -- '--backend %s ' "$b"; done; }

rm -rf "$OUT"
mkdir -p "$RESULTS/runs"

step "1/6 quick sweep: every scheme, backend and obfuscation mode against python-paillier"
dphe-bench sweep --quick --no-progress --out "$RESULTS/sweep-quick.csv"
done_step

step "2/6 speed-up sweep: every backend x obfuscation mode against python-paillier and HEU, D = 1,000, $KEY-bit keys"
# shellcheck disable=SC2046
dphe-bench sweep --no-progress --dimension 1000 --users 1 --key-bits $KEY --sparsity 0.9 \
    --scheme dense --scheme dphe --scheme packed --heu ZPaillier \
    $(backend_flags gmpy2 multiprocessing:workers=2 dask:workers=2 numba:threads=2) \
    --out "$RESULTS/sweep-speedup.csv"
done_step

step "3/6 the paper's DPHE cell: D = 200,000 at 95.6 % sparsity, each backend's fastest configuration and python-paillier"
# shellcheck disable=SC2046
dphe-bench sweep --no-progress --dimension 200000 --users 1 --key-bits $KEY --sparsity 0.956 --scheme dphe \
    $(backend_flags "${FAST[@]}") --out "$RESULTS/sweep-paper.csv"
done_step

step "4/6 the paper's dense cell: D = 200,000, the fastest configuration ($FASTEST)"
dphe-bench sweep --no-progress --no-baseline --dimension 200000 --users 1 --key-bits $KEY --sparsity 0.956 \
    --scheme dense --backend $FASTEST --out "$RESULTS/sweep-paper.csv"
done_step

step "5/6 accuracy runs on digits: users 5-100 at model.alpha 0.01, model.alpha 1e-4 to 0.1 at 5 users"
RUN=(dphe-bench run --no-progress --set crypto.backend=numba --set crypto.obfuscation=djn --set crypto.threads=2
     --set crypto.key_bits=$KEY --set run.output_dir=$RESULTS/runs)
for users in 5 10 20 50 100; do "${RUN[@]}" --set federation.users=$users >/dev/null; done
for alpha in 0.0001 0.001 0.03 0.05 0.1; do "${RUN[@]}" --set model.alpha=$alpha >/dev/null; done
done_step

step "6/6 asv (bench_learning and the speed-up benchmark, quick) and the report"
asv machine --yes >/dev/null
COMMIT=$(git rev-parse HEAD)
asv run --python=same --quick --set-commit-hash "$COMMIT" --bench 'bench_learning|SpeedupOverPythonPaillier'
mkdir -p "$RESULTS/asv"
cp .asv/results/benchmarks.json "$RESULTS/asv/"
for folder in .asv/results/*/; do
    found=$(find "$folder" -maxdepth 1 -name "${COMMIT:0:8}-*.json")
    [ -n "$found" ] || continue
    mkdir -p "$RESULTS/asv/$(basename "$folder")"
    cp "$folder/machine.json" $found "$RESULTS/asv/$(basename "$folder")/"
done
dphe-bench report "$RESULTS" --out "$OUT"
done_step

echo
echo "reports/example regenerated in $(( SECONDS / 60 )) min $(( SECONDS % 60 )) s: $OUT/report.md"
