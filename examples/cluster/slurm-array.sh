#!/usr/bin/env bash
# Extract one image tree with a SLURM job array: each task takes the images whose key hashes to
# its index, writes its own shards and journal into the shared cache directory, and the last step
# merges the manifests. Number the array from 0:
#
#   sbatch --array=0-7 examples/cluster/slurm-array.sh /data/images /data/dino-cache
#
# A task that died (killed, node lost) is resubmitted alone, with the array's size: a one-task
# array has SLURM_ARRAY_TASK_COUNT=1 and would otherwise take every image as a single worker.
# It picks up where the dead task stopped (sbatch passes the environment on):
#
#   DINOFEAT_NUM_WORKERS=8 sbatch --array=3 examples/cluster/slurm-array.sh /data/images /data/dino-cache
#SBATCH --job-name=dinofeat
#SBATCH --cpus-per-task=8
#SBATCH --mem=16G
#SBATCH --time=12:00:00
set -euo pipefail
IMAGES=$1
CACHE=$2
MODEL=${DINOFEAT_MODEL:-$HOME/.cache/dinofeat/default.onnx}

WORKERS=${DINOFEAT_NUM_WORKERS:-$SLURM_ARRAY_TASK_COUNT}

npx dinofeat extract "$IMAGES" --out "$CACHE" --model "$MODEL" --buckets sdxl --threads "${SLURM_CPUS_PER_TASK:-8}" \
  --num-workers "$WORKERS" --worker-index "$SLURM_ARRAY_TASK_ID"

# Afterwards (once, e.g. as a dependent job: sbatch --dependency=afterok:<jobid> ...):
#   npx dinofeat merge "$CACHE" --images "$IMAGES"
# It rebuilds manifest.json and reports images no worker stored (gaps) and keys stored twice.
