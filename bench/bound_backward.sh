#!/usr/bin/env bash
# The gather backward against its memory bound, measured side by side: each round runs BM_copy (a 128 MiB
# copy, GB/s = read + write) and the two gather backward cases of bench_gather (2 threads); a case's ratio is
# the copy's GB/s over the case's bound_GB/s (its footprint -- patch gradients read once, every touched target
# line read and written once -- per second): how many times the time the footprint alone would take at copy
# speed. The _floor cases (bench_gather's BM_gather_backward_floor) time the kernel's read-modify-writes alone,
# from precomputed indices: the same ratio for them, and the kernel's time over its floor's. Prints every
# round, then the medians.
#   bench/bound_backward.sh [BUILD_DIR] [ROUNDS]     (BUILD_DIR configured with -DPW_BENCH=ON; default build)
set -eu
cd "$(dirname "$0")/.."
B=${1:-build}/bench/bench_gather; R=${2:-5}
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p') ($(nproc) cores)"
for r in $(seq 1 "$R"); do
  "$B" --benchmark_filter='BM_copy|BM_gather_backward' 2>/dev/null | awk -v r="$r" '
    /^BM_copy/ { for (i = 1; i <= NF; ++i) if ($i ~ /^GB\/s=/) { sub("GB/s=", "", $i); sub("/s", "", $i); copy = $i } }
    /^BM_gather_backward/ { n = $1; sub("/real_time", "", n); ms[n] = $2
      for (i = 1; i <= NF; ++i) if ($i ~ /^bound_GB\/s=/) { sub("bound_GB/s=", "", $i); sub("/s", "", $i); bw[n] = $i } }
    END { for (n in ms) printf "round %d %s %.2f ms, copy %.1f GB/s, %.2fx the memory bound\n", r, n, ms[n], copy, copy / bw[n] }'
done | tee /dev/stderr | python3 -c '
import statistics, sys
rows = {}
for line in sys.stdin:
    f = line.split()
    rows.setdefault(f[2], []).append((float(f[3]), float(f[6]), float(f[8][:-1])))
for n, v in sorted(rows.items()):
    print(f"median {n}: {statistics.median(x[0] for x in v):.2f} ms, copy {statistics.median(x[1] for x in v):.1f} GB/s, "
          f"{statistics.median(x[2] for x in v):.2f}x the memory bound (range {min(x[2] for x in v):.2f}-{max(x[2] for x in v):.2f})")
for n, v in sorted(rows.items()):
    f = rows.get(n.replace("backward/", "backward_floor/"))
    if f and f is not v:
        print(f"{n}: {statistics.median(a[0] / b[0] for a, b in zip(v, f)):.2f}x the time of its floor (median by round)")
'
