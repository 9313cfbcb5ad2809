#!/usr/bin/env bash
# The GPU check: on a machine with one CUDA GPU and a fresh copy of this repository, set up, run every test
# marked `cuda`, measure the training step (full, cross-modal, uni-modal; bf16; the paper's per-GPU batch of
# 16 videos x 12 frames and a batch of 128) and encoding on ViT-B/32 with random weights, and write it all to
# one folder: results.md, results.json, the benchmarks' JSON, pytest.xml, steps.jsonl, gpu_check.log.
# Sized for 8 minutes in all; every step has its own time limit. See docs/BENCHMARKS.md, "On a GPU".
#
#   bash benchmarks/gpu_check.sh [--out DIR] [--budget SECONDS] [--python PY] [--wheels DIR] [--dry-run]
#
# Set-up, one of:
#   (default)      make .venv/.installed-stamp, as `make test` does (pip needs a package index for torch)
#   --python PY    an interpreter that already has the project's dependencies (and a CUDA build of torch)
#   --wheels DIR   no package index: python3 (or --python), which must bring torch with CUDA, plus the wheels
#                  in DIR for what it lacks, installed into .gpu-site/ (docs/BENCHMARKS.md says how to make them)
# --dry-run: on any machine, measure nothing: check that every command parses and every CUDA test is collected
# (and skipped: no GPU is made visible to them). `make test` runs this through tests/test_gpu_check.py.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=$root/gpu_check_out budget=480 python="" wheels="" dry_run=""
command_line="bash benchmarks/gpu_check.sh $*"
while (($#)); do
    case $1 in
        --out) out=$2; shift 2 ;;
        --budget) budget=$2; shift 2 ;;
        --python) python=$2; shift 2 ;;
        --wheels) wheels=$2; shift 2 ;;
        --dry-run) dry_run=--dry-run; shift ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
# Paths given relative to where the script was called from; then everything runs from the repository.
mkdir -p "$out" && out=$(cd "$out" && pwd) || exit 2
[[ -n $wheels ]] && { wheels=$(cd "$wheels" && pwd) || exit 2; }
[[ $python == */* ]] && python=$(cd "$(dirname "$python")" && pwd)/$(basename "$python")
cd "$root" || exit 2
setup_log="$out/gpu_check.log"
echo "===== set-up" >"$setup_log"

started=$SECONDS
extra_path=""
if [[ -n $wheels ]]; then
    py=${python:-python3}
    shopt -s nullglob
    files=("$wheels"/*.whl)
    if ((${#files[@]} == 0)); then echo "gpu_check.sh: no wheels in $wheels" >&2; exit 2; fi
    extra_path="$root/.gpu-site"
    if [[ -z $dry_run ]]; then
        timeout 180 "$py" -m pip install --quiet --no-index --no-deps --no-compile --upgrade \
            --target "$extra_path" "${files[@]}" >>"$setup_log" 2>&1 \
            || { echo "gpu_check.sh: installing the wheels failed, see $setup_log" >&2; exit 2; }
    fi
elif [[ -n $python ]]; then
    py=$python
else
    py=.venv/bin/python
    if [[ -n $dry_run ]]; then
        make -n .venv/.installed-stamp >>"$setup_log" 2>&1 || { echo "gpu_check.sh: make has no set-up target" >&2; exit 2; }
        [[ -x $py ]] || { echo "gpu_check.sh: no .venv yet: run make first, or give --python" >&2; exit 2; }
    else
        timeout 420 make .venv/.installed-stamp >>"$setup_log" 2>&1 \
            || { echo "gpu_check.sh: set-up failed, see $setup_log" >&2; exit 2; }
    fi
fi
export PYTHONPATH="$root/src${extra_path:+:$extra_path}${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
setup_seconds=$((SECONDS - started))

# The steps, their limits and the report: see src/cmadapter/bench/gpu_check.py.
exec "$py" -m cmadapter.bench.gpu_check --out "$out" --root "$root" --budget "$budget" \
    --setup-seconds "$setup_seconds" --command "$command_line" $dry_run
