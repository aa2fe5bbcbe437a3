#!/usr/bin/env bash
# Extract one image tree with a SLURM job array: each task takes the images whose key hashes to
# its index (dinofeat reads SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT), writes its own shards
# and journal into the shared cache directory, and the last step merges the manifests.
#
#   sbatch --array=0-7 examples/cluster/slurm-array.sh /data/images /data/dino-cache
#SBATCH --job-name=dinofeat
#SBATCH --cpus-per-task=8
#SBATCH --mem=16G
#SBATCH --time=12:00:00
set -euo pipefail
IMAGES=$1
CACHE=$2
MODEL=${DINOFEAT_MODEL:-$HOME/.cache/dinofeat/default.onnx}

npx dinofeat extract "$IMAGES" --out "$CACHE" --model "$MODEL" --buckets sdxl --threads "${SLURM_CPUS_PER_TASK:-8}"

# Afterwards (once, e.g. as a dependent job: sbatch --dependency=afterok:<jobid> ...):
#   npx dinofeat merge "$CACHE" --images "$IMAGES"
# It rebuilds manifest.json and reports images no worker stored (gaps) and keys stored twice.
