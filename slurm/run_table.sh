#!/usr/bin/env bash
# Launch every experiment of one paper table and backbone, one Hydra multirun per task.
#
#   slurm/run_table.sh superglue/bert_large hydra/launcher=slurm hydra.launcher.partition=gpu
#   slurm/run_table.sh ner/roberta_large   hydra/launcher=slurm hydra.launcher.partition=gpu
#
# Why a loop: each experiments/<table>/<backbone>_<task>.yaml carries its own per-task hyper-parameters
# and method x seed grid (hydra.sweeper.params), and Hydra's basic sweeper reads those only for the
# experiment chosen on the command line, so a table is one multirun per task. All multiruns of a table
# share one sweep root, so `python -m ptrain.report multirun/<prefix>` summarises the whole table.
# The submitit launcher blocks until its array finishes; run this inside tmux/screen (see slurm/README.md).
# Extra arguments are passed to every `train.py -m` call. Set PARALLEL=1 to start the tasks'
# multiruns side by side (each still waits for its own array) instead of one after the other.
set -euo pipefail

if [ $# -lt 1 ]; then
  echo "usage: $0 <table>/<backbone> [hydra overrides...]   e.g. $0 superglue/bert_large" >&2
  exit 2
fi
prefix="$1"; shift
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${repo}"

shopt -s nullglob
files=(experiments/"${prefix}"_*.yaml)
if [ ${#files[@]} -eq 0 ]; then
  echo "no experiments match experiments/${prefix}_*.yaml" >&2
  exit 2
fi

stamp="$(date +%Y-%m-%d_%H-%M-%S)"
root="multirun/${prefix}/${stamp}"
# A multirun exits non-zero when any of its jobs failed: note it and go on with the other tasks, so one
# crashed seed does not cancel the rest of the table; the exit status says whether everything ran.
pids=(); names=(); failed=()
for file in "${files[@]}"; do
  name="${file#experiments/}"; name="${name%.yaml}"
  task="${name##*/}"
  cmd=(python train.py -m "experiment=${name}" "hydra.sweep.dir=${root}/${task}" "$@")
  echo "+ ${cmd[*]}"
  if [ "${PARALLEL:-0}" = "1" ]; then
    "${cmd[@]}" &
    pids+=("$!"); names+=("${name}")
  else
    "${cmd[@]}" || failed+=("${name}")
  fi
done
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || failed+=("${names[$i]}")
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "multiruns with failed jobs: ${failed[*]} (their job logs are under ${root}/<task>/)" >&2
  echo "report what finished with: python -m ptrain.report ${root}" >&2
  exit 1
fi
echo "done; report with: python -m ptrain.report ${root}"
