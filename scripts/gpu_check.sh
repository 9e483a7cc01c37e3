#!/usr/bin/env bash
# The GPU check, in one unattended run of at most about 9.5 minutes (each part has its own time limit, taken
# from what is left):
#   1. the CUDA tests (tests/test_cuda.py);
#   2. one epoch of each Table 1 model on real MNIST with trainer.device=cuda (seconds per epoch, NFE, peak memory);
#   3. the training-step benchmark on CUDA (scripts/bench_training.py: GPU time per step and peak memory, ours
#      against torchdiffeq).
# Everything it finds goes to one Markdown file, OUT_DIR/gpu_check.md, written as it goes, so a part that fails or
# runs out of time leaves the others' results; the runs' own folders are under OUT_DIR/runs.
#
#   scripts/gpu_check.sh OUT_DIR [DATA_ROOT]
#
# DATA_ROOT holds MNIST/raw (torchvision's layout); default: $NODE_DATA_DIR. No network is needed: nothing is
# downloaded. Python: $PYTHON, else .venv/bin/python in the repository, else python3.
set -u

usage() { echo "usage: scripts/gpu_check.sh OUT_DIR [DATA_ROOT]   (DATA_ROOT defaults to \$NODE_DATA_DIR)" >&2; exit 2; }
[ $# -ge 1 ] || usage
OUT=$(mkdir -p "$1" && cd "$1" && pwd) || usage
DATA=${2:-${NODE_DATA_DIR:-}}
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" HYDRA_FULL_ERROR=1 PYTHONWARNINGS=ignore
RESULTS=$OUT/gpu_check.md
LOGS=$OUT/logs
mkdir -p "$LOGS" "$OUT/runs"
BUDGET_S=${GPU_CHECK_BUDGET_S:-570}
START=$(date +%s)

left() { echo $(( BUDGET_S - ($(date +%s) - START) )); }
# run LIMIT LOG COMMAND...: at most LIMIT seconds (less if less is left); stdout+stderr to LOG; returns the status.
run() {
  local limit=$1 log=$2; shift 2
  local remaining; remaining=$(left)
  [ "$remaining" -lt "$limit" ] && limit=$remaining
  if [ "$limit" -lt 10 ]; then echo "skipped: the time budget is spent" > "$log"; return 124; fi
  timeout -k 10 "$limit" "$@" > "$log" 2>&1
}
say() { printf '%s\n' "$@" >> "$RESULTS"; }  # one line per argument
fence() { say '```'; tail -n "$2" "$1" >> "$RESULTS"; say '```'; }
status_word() { case $1 in 0) echo "passed";; 124|137) echo "TIMED OUT";; *) echo "FAILED (exit $1)";; esac; }

{
  echo "# GPU check"
  echo
  echo "Repository commit: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown); data root: ${DATA:-not given}"
  echo
  echo "## Machine"
  echo '```'
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -n 4
  echo "CPU cores: $(nproc)"
  "$PY" - <<'EOF' 2>&1
import importlib, torch
print(f"python {__import__('sys').version.split()[0]}, torch {torch.__version__}, CUDA build {torch.version.cuda}, "
      f"available {torch.cuda.is_available()}")
if torch.cuda.is_available():
    print("device:", torch.cuda.get_device_name(0))
for name in ("hydra", "omegaconf", "torchvision", "tensorboard", "scipy", "pytest", "torchdiffeq"):
    try:
        module = importlib.import_module(name)
        print(f"{name} {getattr(module, '__version__', '?')}")
    except Exception as error:
        print(f"{name} MISSING ({type(error).__name__})")
EOF
  echo '```'
} > "$RESULTS"

# 1. The CUDA tests.
say "" "## CUDA tests (tests/test_cuda.py)"
run 180 "$LOGS/tests.log" "$PY" -m pytest -q -rs -p no:cacheprovider tests/test_cuda.py
code=$?
say "" "Status: $(status_word $code)"
fence "$LOGS/tests.log" 40

# 2. One epoch of each Table 1 model on real MNIST.
say "" "## One epoch of each Table 1 model on MNIST, trainer.device=cuda"
if [ -z "$DATA" ] || [ ! -d "$DATA/MNIST/raw" ]; then
  say "" "Skipped: no MNIST under '${DATA:-}' (give DATA_ROOT or NODE_DATA_DIR, a folder holding MNIST/raw)."
else
  say "" "| experiment | status | epoch s (wall) | train CPU s | test accuracy | NFE fwd / bwd per batch | peak memory MiB |" "|---|---|---|---|---|---|---|"
  for experiment in mnist_odenet mnist_rknet mnist_resnet mnist_mlp; do
    dir=$OUT/runs/$experiment
    run 150 "$LOGS/$experiment.log" "$PY" -m node_experiments.cli "experiment=$experiment" trainer.max_epochs=1 \
      trainer.device=cuda trainer.progress_bar=false "data.root=$DATA" data.download=false "hydra.run.dir=$dir"
    code=$?
    row=$("$PY" - "$dir/summary.json" <<'EOF' 2>/dev/null
import json, sys
s = json.load(open(sys.argv[1]))
print(f"{s['epoch_time_s']:.1f} | {s['train_cpu_s']:.1f} | {s['test_accuracy']:.4f} | "
      f"{s['nfe_forward']:.1f} / {s['nfe_backward']:.1f} | {s['peak_memory_bytes'] / 2**20:.1f}")
EOF
    ) || row="- | - | - | - | -"
    say "| $experiment | $(status_word $code) | $row |"
  done
  for experiment in mnist_odenet mnist_rknet mnist_resnet mnist_mlp; do
    if [ ! -f "$OUT/runs/$experiment/summary.json" ]; then
      say "" "$experiment, end of its log:"; fence "$LOGS/$experiment.log" 15
    fi
  done
fi

# 3. The training-step benchmark.
say "" "## Training step: ours against torchdiffeq (scripts/bench_training.py --device cuda)"
if [ -z "$DATA" ] || [ ! -d "$DATA/MNIST/raw" ]; then
  say "" "Skipped: no MNIST data root."
else
  run 170 "$LOGS/bench.log" "$PY" scripts/bench_training.py --device cuda --data-root "$DATA" --steps 10
  code=$?
  say "" "Status: $(status_word $code)"
  fence "$LOGS/bench.log" 30
fi

say "" "Finished in $(( $(date +%s) - START )) s."
echo "gpu_check: results in $RESULTS"
