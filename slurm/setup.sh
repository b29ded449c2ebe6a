# shellcheck shell=bash
# Environment for ptrain jobs on a SLURM cluster; sourced by ptrain/conf/hydra/launcher/slurm.yaml (setup:)
# inside each sbatch script, before srun starts the training processes.
# Everything is driven by variables so the file works unchanged on any cluster: export them in your
# shell before launching (sbatch passes the submitting environment on), or edit the defaults below.
#
#   PTRAIN_MODULES     space-separated `module load` list, e.g. "cuda/12.4 gcc/12"
#   PTRAIN_CONDA_ENV   conda environment to activate
#   PTRAIN_VENV        path of a virtualenv to activate (used when PTRAIN_CONDA_ENV is empty)
#   PTRAIN_CACHE       shared directory for Hugging Face caches (models and datasets)
#   PTRAIN_OFFLINE     1 = compute nodes have no internet: use only the pre-filled cache

if [ -n "${PTRAIN_MODULES:-}" ] && command -v module >/dev/null 2>&1; then
  # shellcheck disable=SC2086
  module load ${PTRAIN_MODULES}
fi

if [ -n "${PTRAIN_CONDA_ENV:-}" ]; then
  # shellcheck disable=SC1091
  source "$(conda info --base)/etc/profile.d/conda.sh" && conda activate "${PTRAIN_CONDA_ENV}"
elif [ -n "${PTRAIN_VENV:-}" ]; then
  # shellcheck disable=SC1091
  source "${PTRAIN_VENV}/bin/activate"
fi

if [ -n "${PTRAIN_CACHE:-}" ]; then
  export HF_HOME="${PTRAIN_CACHE}/huggingface"
fi
if [ "${PTRAIN_OFFLINE:-0}" = "1" ]; then
  export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=offline
fi

# One data-loader thread pool per task, not one per core of the node.
export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}"
# Surface NCCL problems in the job log instead of hanging silently.
export NCCL_DEBUG="${NCCL_DEBUG:-WARN}"
export TORCH_NCCL_ASYNC_ERROR_HANDLING=1
