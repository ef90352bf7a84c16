#!/usr/bin/env bash
# Fuzz the NIfTI reader with libFuzzer for about a minute (FUZZ_SECONDS), seeded with tests/data/nifti-corpus.
# Builds tests/io/fuzz/fuzz_nifti.cpp with clang (ASan + UBSan) in its own folder, build-fuzz/.
# Usage: scripts/fuzz.sh [seconds]    Exit status: 0 when no crash, leak, timeout or OOM was found.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
seconds="${1:-${FUZZ_SECONDS:-60}}"
seeds="$root/tests/data/nifti-corpus"
build="$root/build-fuzz"
command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ not found (apt-get install clang)" >&2; exit 2; }
CC=clang CXX=clang++ cmake -S "$root" -B "$build" -DPW_FUZZ=ON -DPW_CUDA=OFF -DPW_TESTS=ON -DPW_NATIVE=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" --target fuzz_nifti -j2
# Work on a copy of the seeds: libFuzzer adds the inputs it finds to the first corpus folder.
work="$build/fuzz-corpus"
mkdir -p "$work" "$build/fuzz-artifacts"
find "$seeds" -maxdepth 1 -type f \( -name '*.nii' -o -name '*.gz' -o -name '*.hdr' \) -exec cp -n {} "$work/" \;
"$build/tests/fuzz_nifti" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
  -artifact_prefix="$build/fuzz-artifacts/" "$work"
