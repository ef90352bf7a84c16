#!/usr/bin/env bash
# Reproduces the README's synth-brain numbers: makes the dataset if it is missing (../shared/data/synth-brain),
# trains examples/synth-brain.json (one hour on 2 CPU threads) unless OUT already holds the model, then applies it
# to the 3 validation cases with full tree coverage (--lazy-fraction 1) and with the model's lazy evaluation (its
# lazyEval: tree, fraction 0.3; LAZY overrides), and prints Dice per structure,
# patch evaluations, wall time and peak memory per case.
# usage: scripts/synth_brain.sh [DATA=../synth-brain] [OUT=synth-brain-run]
#   env: PATCHWORK (default build/cli/patchwork), SHARED (default ../shared), LAZY (the lazy apply options)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
data=${1:-$root/../synth-brain}
out=${2:-synth-brain-run}
pw=${PATCHWORK:-$root/build/cli/patchwork}
shared=${SHARED:-$root/../shared}
lazy=${LAZY:-}
cases="brain_13 brain_14 brain_15"
mkdir -p "$out"

[ -f "$data/dataset.json" ] || "$shared/data/synth-brain/make_dataset.sh" "$data"
if [ ! -f "$out/model.safetensors" ]; then
  /usr/bin/time -f "train: %e s wall, %M KB peak" \
    "$pw" train --config "$root/examples/synth-brain.json" --dataset "$data" --out "$out/model.safetensors" --threads 2
fi

run_mode() {  # mode, apply options...
  local mode=$1; shift
  mkdir -p "$out/$mode"
  for c in $cases; do
    /usr/bin/time -f "%e %M" -o "$out/$mode/$c.time" \
      "$pw" apply --model "$out/model.safetensors" --in "$data/imagesTr/$c.nii.gz" --out "$out/$mode/$c.nii.gz" \
      --threads 2 "$@" 2> "$out/$mode/$c.log"
    "$pw" eval --pred "$out/$mode/$c.nii.gz" --ref "$data/labelsTr/$c.nii.gz" --json > "$out/$mode/$c.json"
  done
}
run_mode tree --lazy-fraction 1
# shellcheck disable=SC2086
run_mode lazy $lazy

python3 - "$out" "$data/dataset.json" $cases <<'PY'
import json, re, sys
out, ds, cases = sys.argv[1], sys.argv[2], sys.argv[3:]
names = json.load(open(ds))['labels']
for mode in ('tree', 'lazy'):
    dice, times, mems, evals = {}, [], [], []
    for c in cases:
        for row in json.load(open(f'{out}/{mode}/{c}.json'))['labels']:
            dice.setdefault(row['label'], []).append(row['dice'])
        t, m = open(f'{out}/{mode}/{c}.time').read().split()[-2:]
        times.append(float(t)); mems.append(int(m) / 2**20)
        lv = re.findall(r'patches per level ([0-9,]+)', open(f'{out}/{mode}/{c}.log').read())
        evals.append(sum(int(x) for x in lv[-1].split(',')) if lv else float('nan'))
    mean = {l: sum(v) / len(v) for l, v in dice.items()}
    print(f'## {mode}: mean Dice {sum(mean.values()) / len(mean):.3f} over {len(mean)} structures; '
          f'per case {sum(times) / len(times):.1f} s, peak {max(mems):.2f} GB, '
          f'{sum(evals) / len(evals):.0f} patch evaluations')
    for l, d in sorted(mean.items(), key=lambda kv: kv[1]):
        print(f'  {l:3d} {names.get(str(l), "?"):32s} {d:.3f}')
PY
