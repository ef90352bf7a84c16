#!/usr/bin/env bash
# Alternating A/B runs of Google Benchmark binaries on one machine: ROUNDS rounds, each running every
# binary once with --benchmark_filter=FILTER, then the min and median real time per benchmark and binary.
# On a machine whose memory-bound timings drift between minutes, only binaries alternated like this are
# compared (bench/RESULTS.md).
#   bench/ab.sh FILTER ROUNDS BINARY...      e.g. bench/ab.sh 'backward|stitch' 5 /tmp/old/bench_gather build/bench/bench_gather
# A binary may be a wrapper script that sets environment variables (PW_CONV=direct ...) and execs one.
set -eu
if [ $# -lt 3 ]; then sed -n 2,7p "$0"; exit 2; fi
F="$1"; R="$2"; shift 2
for i in $(seq "$R"); do
  for b in "$@"; do
    "$b" --benchmark_filter="$F" 2>/dev/null | awk -v b="$b" '/^BM_/ {print b, $1, $2}'
  done
done | python3 -c '
import statistics, sys
runs = {}
for line in sys.stdin:
    b, name, t = line.split()
    runs.setdefault((name, b), []).append(float(t))
for (name, b), v in sorted(runs.items()):
    print(f"{name:50s} {b:40s} min {min(v):9.3f}  median {statistics.median(v):9.3f}  n={len(v)}")
'
