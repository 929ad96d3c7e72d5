#!/usr/bin/env bash
# The SciFact pipeline on a GPU, in one call (≤ 10 min wall), from the repo root of a copy of the project.
#
# Before, on a machine with PyPI (the device has no network):
#     python -m bench.gpu_pack --data ../shared/data/scifact      # -> bench/work/gpu_carry (ignored), < 64 MiB
# Then on the GPU machine, from the project root (this workplace's device tool: one `run` with command
# "bash bench/gpu.sh", carry ["bench/work/gpu_carry"], timeout_s 600; $OUT is the tool's):
#     bash bench/gpu.sh
# It installs the carried wheels (no index), expands the fp16 model, logs nvidia-smi, and runs
# bench/gpu_run.py for each setting in $SETTINGS (default: gpu-sizes; see gpu_run.py), each within its share of
# $BUDGET_S, then writes gpu-summary.md. One setting takes ~4 min on an H200 (2026-12-04: 243 s), so two in one
# 10-minute call leave each too little: run SETTINGS=cpu-budget in a second call where the budget allows.
# Results go to $OUT (default bench/work/gpu_out): gpu.log, nvidia-smi.csv, gpu-<setting>.json,
# gpu-<setting>-report.md, gpu-summary.md (at most 7 files); copy them into bench/results/.
# CPU rehearsal: DEVICE=cpu TINY=1 SETTINGS=cpu-budget bash bench/gpu.sh
set -euo pipefail

CARRY=${CARRY:-bench/work/gpu_carry}
OUT=${OUT:-bench/work/gpu_out}
DEVICE=${DEVICE:-cuda}
SETTINGS=${SETTINGS:-"gpu-sizes"}
BUDGET_S=${BUDGET_S:-540}          # leaves a minute of the 600 s call for start-up and the transfers back
TMP=${GPU_TMP:-/tmp/ragtune-gpu}
PY=${PYTHON:-python3}

deadline=$(( $(date +%s) + BUDGET_S ))
mkdir -p "$OUT" "$TMP/bin"
OUT=$(cd "$OUT" && pwd)
exec > >(tee -a "$OUT/gpu.log") 2>&1
echo "== $(date -u +%FT%TZ) bench/gpu.sh: device $DEVICE, settings: $SETTINGS, budget ${BUDGET_S}s"

# The stages' dvc.yaml commands call `python`; the image may have only python3. A wrapper, not a link: a
# link to a venv's python leaves the venv (python finds pyvenv.cfg beside the path it was started as).
printf '#!/bin/sh\nexec "%s" "$@"\n' "$(command -v "$PY")" > "$TMP/bin/python"
chmod +x "$TMP/bin/python"
export PATH="$TMP/bin:$PATH"
if [ -z "${NO_INSTALL:-}" ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$TMP/site" \
        "$CARRY"/wheels/*.whl
    export PYTHONPATH="$TMP/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DVC_NO_ANALYTICS=1 TOKENIZERS_PARALLELISM=false
tar xzf "$CARRY/scifact.tgz" -C "$TMP"
"$PY" -m bench.gpu_run expand-model --src "$CARRY/model" --dest "$TMP/all-MiniLM-L6-v2"

smi=""
if command -v nvidia-smi >/dev/null; then
    nvidia-smi
    nvidia-smi --query-gpu=timestamp,memory.used,utilization.gpu --format=csv,noheader -lms 500 \
        > "$OUT/nvidia-smi.csv" &
    smi_pid=$!
    trap 'kill $smi_pid 2>/dev/null || true' EXIT
    smi="--smi-log $OUT/nvidia-smi.csv"
fi

# One setting in its own process group, stopped as a whole (dvc, the stage, torchrun workers) when its time
# is up: `timeout` would stop gpu_run.py alone and leave its stage running into the next setting.
run_setting() {
    set -m
    "$PY" -m bench.gpu_run run --setting "$1" --data "$TMP/scifact" --model "$TMP/all-MiniLM-L6-v2" \
        --work "$TMP/work" --out "$OUT" --device "$DEVICE" ${TINY:+--tiny} $smi &
    local pid=$! rc=0
    set +m
    ( sleep "$2"; echo "== $1: out of time after $2 s; stopping it (its finished stages are kept)"
      kill -TERM -- "-$pid" 2>/dev/null ) &
    local watcher=$!
    wait "$pid" || rc=$?
    kill "$watcher" 2>/dev/null || true
    echo "== $1: exit code $rc"
}

set -- $SETTINGS
while [ $# -gt 0 ]; do
    left=$(( deadline - $(date +%s) - 15 ))
    share=$(( left / $# ))            # an equal share of what is left to each remaining setting
    echo "== $1: up to ${share}s"
    run_setting "$1" "$share"
    shift
done
"$PY" -m bench.gpu_run summary --out "$OUT"
