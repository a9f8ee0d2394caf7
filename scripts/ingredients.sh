#!/usr/bin/env bash
# What each ingredient of the best_* recipes adds, on the 5,000 held-out images: each recipe as it is
# and with one ingredient taken out (or, for the moving average, put in), one Hydra sweep per row.
# The runs go to outputs/ingredients/ROW/seeds_0_1_2/ (named by their seeds); their summaries
# (results.json and Hydra's records, no checkpoints) are copied to results/ingredients/, which is kept
# in git, so that seeds run on another day join the same table:
#   python -m mnist_lab.report runs=results/ingredients write=RESULTS.md \
#     'section=What each ingredient adds' overwrite=true
# Usage: [OVERRIDES='trainer.accelerator=gpu ...'] scripts/ingredients.sh [SEEDS (default 0,1,2)] [ROW ...]
# (default: every row below; OVERRIDES are added to every row)
set -euo pipefail
seeds=${1:-0,1,2}
shift || true
runs="seeds_${seeds//,/_}"  # a directory name Hydra's override parser takes: no '=' and no ','.
declare -A rows=(
  [mnist]="experiment=best_mnist"
  [mnist_one_conv]="experiment=best_mnist model.convs=1"
  [mnist_shift_only]="experiment=best_mnist augment=shift"
  [mnist_no_smoothing]="experiment=best_mnist label_smoothing=0"
  [mnist_ema]="experiment=best_mnist callbacks=ema"
  [fashion]="experiment=best_fashion"
  [fashion_no_erase]="experiment=best_fashion data.augment.erase=0"
  [fashion_no_flip]="experiment=best_fashion data.augment.hflip=false"
  [fashion_no_smoothing]="experiment=best_fashion label_smoothing=0"
  [fashion_ema]="experiment=best_fashion callbacks=ema"
)
for row in "${@:-${!rows[@]}}"; do
  if [[ ! -v "rows[$row]" ]]; then
    echo "scripts/ingredients.sh: no row '$row'; the rows: ${!rows[*]}" >&2
    exit 2
  fi
  # shellcheck disable=SC2086  # each row is several overrides
  python -m mnist_lab -m ${rows[$row]} ${OVERRIDES:-} "seed=$seeds" "hydra.sweep.dir=outputs/ingredients/$row/$runs"
  find "outputs/ingredients/$row/$runs" \( -name results.json -o -name multirun.yaml \
    -o -name overrides.yaml -o -name config.yaml \) | while read -r file; do
    mkdir -p "$(dirname "results/${file#outputs/}")"
    cp "$file" "results/${file#outputs/}"
  done
done
