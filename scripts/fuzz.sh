#!/usr/bin/env bash
# Fuzz with libFuzzer (ASan + UBSan), each target for about a minute (FUZZ_SECONDS) by default:
#   nifti   the NIfTI reader (tests/io/fuzz/fuzz_nifti.cpp), seeded with tests/data/nifti-corpus
#   config  TrainConfig::load (tests/fuzz/fuzz_config.cpp), seeded with tests/fuzz/config-seeds and examples/
#   model   Model::load (tests/fuzz/fuzz_model.cpp), seeded with tests/fuzz/model-seeds and the files
#           make_model_seeds writes with the current code
# Builds them with clang in their own folder, build-fuzz/; each target's log is build-fuzz/fuzz-<target>.log,
# its growing corpus build-fuzz/fuzz-corpus[-<target>]/, what it finds build-fuzz/fuzz-artifacts[-<target>]/
# (the nifti target keeps the folders without the suffix). Prints executions, coverage and findings per target.
# Usage: scripts/fuzz.sh [seconds] [target...]     (targets: nifti config model; default all three)
#   FUZZ_JOBS=2        run two targets at a time (default 1: one after the other)
#   FUZZ_KEEP_GOING=1  fork mode: keep fuzzing after a crash, timeout or OOM and report every one found
# Exit status: 0 when no target found a crash, leak, timeout or OOM; 1 when one did; 2 on a setup error.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
seconds="${1:-${FUZZ_SECONDS:-60}}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(nifti config model)
for t in "${targets[@]}"; do
  case "$t" in nifti|config|model) ;; *) echo "fuzz.sh: unknown target '$t' (nifti, config, model)" >&2; exit 2 ;; esac
done
jobs="${FUZZ_JOBS:-1}"
build="$root/build-fuzz"
command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ not found (apt-get install clang)" >&2; exit 2; }
CC=clang CXX=clang++ cmake -S "$root" -B "$build" -DPW_FUZZ=ON -DPW_CUDA=OFF -DPW_TESTS=ON -DPW_NATIVE=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
build_targets=()
for t in "${targets[@]}"; do build_targets+=("fuzz_$t"); done
[[ " ${targets[*]} " == *" model "* ]] && build_targets+=(make_model_seeds)
cmake --build "$build" --target "${build_targets[@]}" -j2

# Work on a copy of the seeds: libFuzzer adds the inputs it finds to the first corpus folder.
corpus_of() { [ "$1" = nifti ] && echo "$build/fuzz-corpus" || echo "$build/fuzz-corpus-$1"; }
artifacts_of() { [ "$1" = nifti ] && echo "$build/fuzz-artifacts" || echo "$build/fuzz-artifacts-$1"; }
seed() {
  local t="$1" work
  work="$(corpus_of "$t")"
  mkdir -p "$work" "$(artifacts_of "$t")"
  case "$t" in
    nifti) find "$root/tests/data/nifti-corpus" -maxdepth 1 -type f \( -name '*.nii' -o -name '*.gz' -o -name '*.hdr' \) \
             -exec cp -n {} "$work/" \; ;;
    config) find "$root/tests/fuzz/config-seeds" "$root/examples" -maxdepth 1 -type f -name '*.json' -exec cp -n {} "$work/" \; ;;
    model) find "$root/tests/fuzz/model-seeds" -maxdepth 1 -type f -name '*.safetensors' -exec cp -n {} "$work/" \;
           "$build/tests/make_model_seeds" "$work/generated" >/dev/null && for f in "$work/generated"/*; do
             mv -f "$f" "$work/gen_$(basename "$f")"; done && rmdir "$work/generated" ;;
  esac
}

# One target: libFuzzer's output goes to the log; the artifacts written during this run are its findings.
run() {
  local t="$1" log="$build/fuzz-$1.log" art stamp rc=0
  art="$(artifacts_of "$t")/"
  stamp="$build/.fuzz-$t.stamp"
  touch "$stamp"
  local mode=()
  [ "${FUZZ_KEEP_GOING:-0}" = 1 ] && mode=(-fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1)
  "$build/tests/fuzz_$t" "${mode[@]}" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$art" "$(corpus_of "$t")" >"$log" 2>&1 || rc=$?
  echo "$rc" >"$build/.fuzz-$t.rc"
}

pids=()
for t in "${targets[@]}"; do seed "$t"; done
for t in "${targets[@]}"; do
  echo "fuzz.sh: fuzzing $t for ${seconds}s (log: $build/fuzz-$t.log)"
  run "$t" &
  pids+=($!)
  if [ ${#pids[@]} -ge "$jobs" ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
done
for p in "${pids[@]}"; do wait "$p"; done

status=0
echo
printf '%-7s %12s %8s %8s %8s %9s\n' target executions cov ft corpus findings
for t in "${targets[@]}"; do
  log="$build/fuzz-$t.log"
  rc="$(cat "$build/.fuzz-$t.rc")"
  # Executions: the final stats (plain mode) or the last status line "#N: cov: .." (fork mode).
  execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)"
  last="$(grep -E '^#[0-9]+' "$log" | tail -1 || true)"
  [ -n "$execs" ] || execs="$(sed -E 's/^#([0-9]+).*/\1/' <<<"$last")"
  cov="$(grep -oE 'cov: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || true)"
  ft="$(grep -oE 'ft: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || true)"
  corp="$(grep -oE 'corp: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || true)"
  mapfile -t found < <(find "$(artifacts_of "$t")" -maxdepth 1 -type f \
    \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) -newer "$build/.fuzz-$t.stamp" | sort)
  printf '%-7s %12s %8s %8s %8s %9s\n' "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "${#found[@]}"
  if [ ${#found[@]} -gt 0 ] || { [ "$rc" != 0 ] && [ "${FUZZ_KEEP_GOING:-0}" != 1 ]; }; then
    status=1
    for f in "${found[@]:0:10}"; do echo "    finding: $f   (reproduce: $build/tests/fuzz_$t $f)"; done
    [ ${#found[@]} -le 10 ] || echo "    ... and $((${#found[@]} - 10)) more in $(artifacts_of "$t")/"
    [ ${#found[@]} -gt 0 ] || echo "    libFuzzer exited with $rc: see $log"
    # What went wrong, most frequent first (sanitizer reports, uncaught exceptions).
    grep -E '^(SUMMARY: |==[0-9]+== ?ERROR)|runtime error: |  what\(\): ' "$log" | grep -v NEW_FUNC | cut -c1-200 |
      sort | uniq -c | sort -rn | head -8 | sed 's/^/    /' || true
  fi
done
exit "$status"
