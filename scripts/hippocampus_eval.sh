#!/usr/bin/env bash
# Applies a hippocampus model to the 40 validation cases of its config and prints the mean Dice per label.
# usage: scripts/hippocampus_eval.sh MODEL CONFIG OUT_DIR [apply options...]
#   e.g. scripts/hippocampus_eval.sh run/model.safetensors examples/hippocampus-toolbox.json out-random \
#          --generate-type random --num-patches 250 --branch-factor 2
#   env: PATCHWORK (default build/cli/patchwork), DATA (default ../shared/data/msd-task04-hippocampus)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
model=$1; config=$2; out=$3; shift 3
pw=${PATCHWORK:-$root/build/cli/patchwork}
data=${DATA:-$root/../shared/data/msd-task04-hippocampus}
mkdir -p "$out/in"
cases=$(python3 -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))["dataset"]["validation"]))' "$config")
for c in $cases; do ln -sf "$(cd "$data/imagesTr" && pwd)/$c.nii.gz" "$out/in/$c.nii.gz"; done
start=$(date +%s.%N)
"$pw" apply --model "$model" --in-dir "$out/in" --out-dir "$out" --threads 2 --quiet "$@"
end=$(date +%s.%N)
for c in $cases; do "$pw" eval --pred "$out/$c.nii.gz" --ref "$data/labelsTr/$c.nii.gz" --json > "$out/$c.json"; done
python3 - "$out" "$start" "$end" $cases <<'PY'
import json, sys
out, t0, t1, cases = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]
dice = {}
for c in cases:
    for row in json.load(open(f'{out}/{c}.json'))['labels']:
        dice.setdefault(row['label'], []).append(row['dice'])
print(f'{len(cases)} cases applied in {t1 - t0:.1f} s; mean Dice ' +
      ', '.join(f'label {l}: {sum(v) / len(v):.3f}' for l, v in sorted(dice.items())))
PY
