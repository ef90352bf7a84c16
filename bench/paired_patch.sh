#!/usr/bin/env bash
# Paired rounds for the patch kernels (issues 4 and 18): ours, then PyTorch 1.13 (Debian) and a current
# PyTorch 2.x (a venv from PyPI), then ours again, all with 2 threads, so that every speed ratio is
# measured on the same machine within a minute. Prints each round, then the medians over all rounds.
#   bench/paired_patch.sh [BUILD_DIR] [ROUNDS]     (BUILD_DIR configured with -DPW_BENCH=ON; default build)
# Peers: ../shared/peer-bench run by /usr/bin/python3 (python3-torch 1.13) and by $PW_TORCH2_PYTHON
# (default /tmp/peer/bin/python, made by
#   python3 -m venv /tmp/peer && /tmp/peer/bin/pip install torch numpy scipy   # PyPI, outside the repo
# ); a missing interpreter is reported and skipped.
set -eu
cd "$(dirname "$0")/.."
B=${1:-build}/bench; R=${2:-3}; P=../shared/peer-bench
T2=${PW_TORCH2_PYTHON:-/tmp/peer/bin/python}
export PEER_RESULTS_DIR=$(mktemp -d)
REC=$PEER_RESULTS_DIR/records   # lines: who|case|ms
ours() { "$B/bench_gather" --benchmark_filter='/2/' --benchmark_repetitions=5 --benchmark_report_aggregates_only=true 2>/dev/null |
         awk '/_median/ {sub("/real_time_median", "", $1); print "ours|" $1 "|" $2}' | tee -a "$REC"; }
peer() {  # interpreter tag script args...
  local py=$1 tag=$2; shift 2
  "$py" "$P/$1" --threads 2 "${@:2}" 2>/dev/null | grep -E 'med=' | grep -E 'grid_sample|index_put|slice \+=' |
    grep ' t=2 ' | sed -E 's/ t=2 med= +/|/; s/  +/|/; s/ ms min=.*//; s/ +[|]/|/g' | awk -F'|' -v t="$tag" '{ print t "|" $1 " " $2 "|" $3 }' |
    tee -a "$REC"
}
peers=("/usr/bin/python3 torch-$(/usr/bin/python3 -c 'import torch; print(torch.__version__)' 2>/dev/null || echo missing)")
if [ -x "$T2" ]; then peers+=("$T2 torch-$("$T2" -c 'import torch; print(torch.__version__)')"); else echo "no PyTorch 2.x at $T2: skipped"; fi
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p') ($(nproc) cores); load $(cut -d' ' -f1-3 /proc/loadavg)"
"$B/bench_gather" --benchmark_filter='BM_gather/nearest/2' --benchmark_min_time=0.01 2>/dev/null | grep -o 'Authentic.*\|Genuine.*' | head -1 | sed 's/^/ours: /'
for r in $(seq 1 "$R"); do
  echo "round $r ($(date -u +%H:%M:%S) UTC, load $(cut -d' ' -f1 /proc/loadavg))"
  ours
  for pe in "${peers[@]}"; do
    set -- $pe
    [[ $2 == *missing ]] && continue
    peer "$1" "$2" bench_gather.py --peers torch
    peer "$1" "$2" bench_scatter.py
  done
  ours
done
echo "medians over $R rounds (ms):"
/usr/bin/python3 - "$REC" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    who, case, ms = line.rstrip("\n").split("|")
    runs.setdefault((case, who), []).append(float(ms))
for (case, who), v in sorted(runs.items()):
    print(f"  {who:<18s} {case:<60s} {statistics.median(v):9.3f}   ({len(v)} runs)")
PY
