#!/usr/bin/env bash
# gpu_hippocampus.sh BIN DATA [NUM_ITS] [TIME_LIMIT_S]: the hippocampus end to end on the GPU (issue 13),
# called by scripts/gpu_check.sh. Trains examples/hippocampus.json with `patchwork train --device "${PW_DEVICE:-cuda}"`
# (num_its and time_limit_s replaced; no intermediate validation, the final one on the 40 validation
# cases gives the Dice), then times `patchwork apply --device "${PW_DEVICE:-cuda}"` on one validation case and checks
# the CLI's apply + eval on 8 validation cases against the trainer's Dice. Prints everything on stdout.
#   BIN   folder holding the `patchwork` program
#   DATA  the MSD Task04 folder (imagesTr/, labelsTr/, dataset.json), e.g. a carried copy of
#         ../shared/data/msd-task04-hippocampus
set -u -o pipefail
BIN=$(cd "$1" && pwd) DATA=$(cd "$2" && pwd) ITS=${3:-200} LIMIT=${4:-280}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
W=${TMPDIR:-/tmp}/pw-hippo
rm -rf "$W" && mkdir -p "$W/val" "$W/pred"
P="$BIN/patchwork"
PY=python3
command -v "$PY" >/dev/null || PY=/opt/torch/.venv/bin/python3

"$PY" - "$ROOT/examples/hippocampus.json" "$W/config.json" "$ITS" "$LIMIT" <<'EOF' || exit 1
import json, sys
c = json.load(open(sys.argv[1]))
c["num_its"] = int(sys.argv[3]); c["time_limit_s"] = float(sys.argv[4]); c["validation_every"] = 0
json.dump(c, open(sys.argv[2], "w"), indent=1)
EOF

echo "== train: num_its $ITS, time_limit_s $LIMIT, device ${PW_DEVICE:-cuda}, $(nproc) threads"
t0=$(date +%s%N)
"$P" train --config "$W/config.json" --dataset "$DATA" --out "$W/model.safetensors" --device "${PW_DEVICE:-cuda}" || {
  echo "train FAILED"
  exit 1
}
echo "train wall: $(( ($(date +%s%N) - t0) / 1000000 )) ms"
tail -3 "$W/model.safetensors.log.jsonl"

# The first 8 validation cases through the CLI (apply, then eval against the reference).
mapfile -t VAL < <("$PY" -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1]))["dataset"]["validation"][:8]))' \
  "$W/config.json")
for v in "${VAL[@]}"; do ln -s "$DATA/imagesTr/$v.nii.gz" "$W/val/$v.nii.gz"; done
echo "== apply one case, device cuda (seconds after the model is loaded; run twice, the first warms cuDNN)"
for i in 1 2; do
  "$P" apply --model "$W/model.safetensors" --in "$W/val/${VAL[0]}.nii.gz" --out "$W/one.nii.gz" --device "${PW_DEVICE:-cuda}" --quiet
done
echo "== apply 8 validation cases (--in-dir), device cuda"
t0=$(date +%s%N)
"$P" apply --model "$W/model.safetensors" --in-dir "$W/val" --out-dir "$W/pred" --device "${PW_DEVICE:-cuda}" --quiet
echo "apply wall for 8 cases (one process, model loaded once): $(( ($(date +%s%N) - t0) / 1000000 )) ms"
for v in "${VAL[@]}"; do
  "$P" eval --pred "$W/pred/$v.nii.gz" --ref "$DATA/labelsTr/$v.nii.gz" --labels 1,2 --json
done >"$W/eval.jsonl"
"$PY" - "$W/eval.jsonl" <<'EOF'
import json, sys
rows = []
for line in open(sys.argv[1]).read().replace("}\n{", "}\x00{").split("\x00"):
    if line.strip(): rows.append(json.loads(line))
def dice(r, lab):
    for e in r.get("labels", []):
        if e.get("label") == lab: return e.get("dice")
    return float("nan")
for lab in (1, 2):
    d = [dice(r, lab) for r in rows]
    print(f"CLI apply+eval, 8 validation cases, label {lab}: mean Dice {sum(d)/len(d):.4f}")
EOF
