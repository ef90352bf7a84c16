#!/usr/bin/env bash
# Paired rounds for the patch kernels (issue 4): ours, then the PyTorch peers, then ours again, all with
# 2 threads, so that every speed ratio is measured on the same machine within a minute.
#   bench/paired_patch.sh [BUILD_DIR] [ROUNDS]     (BUILD_DIR configured with -DPW_BENCH=ON; default build)
# Needs ../shared/peer-bench and Debian's python3-torch. Prints the medians of each round.
set -eu
cd "$(dirname "$0")/.."
B=${1:-build}/bench; R=${2:-3}; P=../shared/peer-bench
export PEER_RESULTS_DIR=$(mktemp -d)
ours() { "$B/bench_gather" --benchmark_filter='/2/' --benchmark_repetitions=5 --benchmark_report_aggregates_only=true 2>/dev/null |
         awk '/_median/ {sub("/real_time_median", "", $1); printf "  ours  %-32s %s %s\n", $1, $2, $3}'; }
peer() { /usr/bin/python3 "$P/$1" --threads 2 "${@:2}" 2>/dev/null | grep -E 'med=' | grep -E 'grid_sample|index_put' |
         sed 's/  */ /g' | awk '{print "  torch", $0}'; }
for r in $(seq 1 "$R"); do
  echo "round $r ($(date -u +%H:%M:%S) UTC, load $(cut -d' ' -f1 /proc/loadavg))"
  ours
  peer bench_gather.py --peers torch
  peer bench_scatter.py
  ours
done
