#!/usr/bin/env bash
# gpu_check.sh: the ONE script to run on a lent GPU machine (issue 5, CUDA backend). It runs the CUDA
# tests (CPU-vs-GPU parity of every op, U-Net training steps, runtime, patch kernels, `patchwork
# train` on the GPU), the CUDA benchmarks and the PyTorch peer on the same card, each step under its
# own time limit, and leaves at most 8 files in $OUT (the device tool brings back no more):
#   gpu_check.log          everything: card, libraries, step summary, benchmark console output
#   tests_engine.txt       pw_tests_engine, all of it (doctest console reporter, per-test durations)
#   tests_kernels.txt      pw_tests_kernels, all of it (the GPU patch-kernel cases are test_patch_gpu.cpp)
#   tests_train_cli.txt    pw_tests_train, "cli: patchwork train" (trains on the GPU: default device)
#   (hippocampus: scripts/gpu_hippocampus.sh, train + apply + eval on the device, into gpu_check.log)
#   bench_cuda.json        bench_cuda (conv3d/conv2d GFLOP/s, U-Net step batch 8/64, TF32 on/off)
#   bench_gather_cuda.json bench_gather's BM_cuda_* cases (copy, gather, stitch)
#   peer_cuda.json         bench/peer_cuda.py: PyTorch + cuDNN, the same cases, the same card
#   sanitizer.txt          only when tests_engine failed: its CUDA tests again under compute-sanitizer
#
# PREPARE (here, on the build machine without a GPU; 4 min on 2 cores with a warm ccache, longer cold):
#   scripts/gpu_check.sh --pack
# which runs exactly
#   cmake -S . -B build-gpu -DPW_CUDA=ON -DPW_TESTS=ON -DPW_BENCH=ON -DPW_NATIVE=OFF \
#         -DCMAKE_CXX_FLAGS=-march=x86-64-v3 -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_BUILD_TYPE=Release
#   cmake --build build-gpu -j2 --target pw_tests_engine pw_tests_kernels pw_tests_train bench_cuda \
#         bench_gather patchwork pw_mpi_check
# and copies the 7 programs, the CUDA plugin libpatchwork_cuda.so (the programs load it from their own
# folder), Debian's libbenchmark.so.1debian and Open MPI's libraries (the programs link libmpi; the GPU
# image may have neither) and BUILD_INFO (a
# hash of the sources) into build-gpu/pack (19 MiB; the working tree plus carried paths must stay
# under 64 MiB). sm_90 = H100 and H200; PW_NATIVE=OFF + x86-64-v3 (AVX2) so the host code runs on
# any recent x86-64 CPU there. Rebuild the pack after any source change: the script compares the hash
# and says "STALE" when the sources differ from what the pack was built from.
#
# CALL (device tool):
#   run(command="bash scripts/gpu_check.sh", carry=["build-gpu/pack"], timeout_s=600)
# The script keeps itself within PW_GPU_BUDGET_S (default 530 s) and gives each step a time limit,
# so partial results come back even when a step hangs. A session has 15 min of device time in all
# (the machine's start, ~1-2 min, included): to keep room for a second run after a fix, call
#   run(command="PW_GPU_BUDGET_S=360 bash scripts/gpu_check.sh", carry=["build-gpu/pack"], timeout_s=420)
# Steps in order (limit): tests_engine (180 s), tests_kernels (90), tests_train_cli (90), nccl (60; with
# mpirun also nccl_mpi 90, or on one GPU nccl_one_gpu_refused 60 + gpu_host_path 60: see nccl_checks),
# hippocampus (PW_HIPPO_LIMIT_S, 360; PW_HIPPO_ITS iterations, default 500 = ~190 s on an H200, within
# PW_HIPPO_TRAIN_S = 280 s; only with the data in .gpudata/, carried), bench_cuda (150), peer_cuda (150), bench_gather_cuda (90), sanitizer (150, only after a failure).
# Without the pack it builds there (needs Eigen3, nlohmann-json, doctest, zlib headers on that image;
# if they are missing it says so; Google Benchmark missing = no benchmarks).
# cuDNN and cuBLAS are found on the GPU machine (CUDA toolkit or PyTorch's nvidia-* pip packages)
# and put on LD_LIBRARY_PATH; the log shows `ldd` of every program.
# Without a GPU the script prints "no GPU" and exits 0 after the checks that need none.
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
PACK=${PW_GPU_PACK:-$ROOT/build-gpu/pack}

# ---- source hash (same file set here and on the GPU machine) ------------------------------------
source_hash() {
  find CMakeLists.txt cmake io kernels engine train apply tests bench -type f \
    \( -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' -o -name '*.txt' -o -name '*.cmake' -o -name '*.map' \) \
    -not -path '*/build*' 2>/dev/null | LC_ALL=C sort | xargs sha1sum | sha1sum | cut -c1-16
}

# ---- --pack: build here and assemble build-gpu/pack ---------------------------------------------
if [ "${1:-}" = "--pack" ]; then
  set -e
  BUILD=$ROOT/build-gpu
  cmake -S . -B "$BUILD" -DPW_CUDA=ON -DPW_TESTS=ON -DPW_BENCH=ON -DPW_NATIVE=OFF \
    -DCMAKE_CXX_FLAGS=-march=x86-64-v3 -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_BUILD_TYPE=Release
  cmake --build "$BUILD" -j"${PW_JOBS:-2}" --target pw_tests_engine pw_tests_kernels pw_tests_train bench_cuda \
    bench_gather patchwork pw_mpi_check
  rm -rf "$PACK"
  mkdir -p "$PACK/lib"
  cp "$BUILD"/tests/pw_tests_engine "$BUILD"/tests/pw_tests_kernels "$BUILD"/tests/pw_tests_train \
    "$BUILD"/bench/bench_cuda "$BUILD"/bench/bench_gather "$BUILD"/cli/patchwork "$BUILD"/lib/libpatchwork_cuda.so "$PACK"/
  [ -x "$BUILD"/tests/pw_mpi_check ] && cp "$BUILD"/tests/pw_mpi_check "$PACK"/
  # Shared libraries of ours that the GPU image may lack (everything but the CUDA libraries and libc/libstdc++):
  # Google Benchmark, and Open MPI with what it needs (a build with PW_MPI links libmpi into every program).
  for lib in $( (ldd "$PACK"/bench_cuda; ldd "$PACK"/patchwork) |
    awk '/libbenchmark|libmpi|libopen-rte|libopen-pal|libhwloc|libevent|libpmix|libudev/ {print $3}' | sort -u); do
    cp -L "$lib" "$PACK/lib/"
  done
  {
    echo "source_hash $(source_hash)"
    echo "git_head $(git rev-parse HEAD 2>/dev/null || echo none)"
    echo "built $(date -u +%FT%TZ) on $(uname -n)"
    echo "nvcc $(nvcc --version | tail -1)"
    echo "cudnn_header $(grep -h '#define CUDNN_M[AI][JN]O*R ' /usr/local/cuda/include/cudnn_version.h 2>/dev/null | awk '{print $3}' | paste -sd.)"
  } >"$PACK/BUILD_INFO"
  du -sh "$PACK"
  cat "$PACK/BUILD_INFO"
  echo "carry: build-gpu/pack   (working tree + pack must stay under 64 MiB)"
  exit 0
fi

# ---- on the GPU machine -------------------------------------------------------------------------
OUT=${OUT:-/tmp/pw-gpu-check}  # the device tool sets OUT
mkdir -p "$OUT"
LOG=$OUT/gpu_check.log
BUDGET=${PW_GPU_BUDGET_S:-530}
T0=$(date +%s)
SUMMARY=""

say() { echo "[gpu_check $(($(date +%s) - T0))s] $*"; }
left() { echo $((BUDGET - ($(date +%s) - T0))); }
# step NAME MAX_SECONDS OUTFILE CMD...: runs CMD under min(MAX, time left - 10 s); output to OUTFILE and the log.
step() {
  local name=$1 max=$2 outfile=$3
  shift 3
  # PW_GPU_STEPS="a b c": run only the named steps (default: every step).
  if [ -n "${PW_GPU_STEPS:-}" ] && [[ " $PW_GPU_STEPS " != *" $name "* ]]; then
    return
  fi
  local l
  l=$(($(left) - 10))
  [ "$l" -lt "$max" ] && max=$l
  if [ "$max" -lt 15 ]; then
    say "SKIP $name (time budget spent)"
    SUMMARY+="$(printf '%-22s %-8s %5s s\n' "$name" skipped 0)"$'\n'
    return
  fi
  say "RUN  $name (limit ${max}s): $*"
  local t=$(date +%s) rc
  # Line-buffered output, so that what a killed step printed is not lost in a buffer.
  local lb=()
  command -v stdbuf >/dev/null && lb=(stdbuf -oL -eL)
  if [ "$outfile" = "-" ]; then
    timeout -k 10 "$max" "${lb[@]}" "$@"
    rc=$?
  else
    timeout -k 10 "$max" "${lb[@]}" "$@" 2>&1 | tee "$OUT/$outfile"
    rc=$?
  fi
  local status=ok
  [ $rc -ne 0 ] && status="rc=$rc"
  [ $rc -eq 124 ] || [ $rc -eq 137 ] && status="TIMEOUT"
  say "DONE $name: $status in $(($(date +%s) - t)) s"
  SUMMARY+="$(printf '%-22s %-8s %5s s\n' "$name" "$status" $(($(date +%s) - t)))"$'\n'
}

# NCCL between GPU ranks (kernels/cuda/nccl.h, reached through the plugin's table). NCCL puts one rank per
# GPU, so one GPU allows only a communicator of one rank: pw_tests_engine's NCCL cases (the plugin's
# entries, libnccl.so.2, one rank's allreduce of known values returns them bit for bit; also inside the
# tests_engine step). With mpirun on the machine, pw_mpi_check on 2 ranks: with 2+ GPUs each rank gets its
# own (CUDA_VISIBLE_DEVICES) and the gradient average of known vectors goes through NCCL; with one GPU, 2
# ranks must stop with the clear message, and PW_NCCL=0 must reduce the GPU gradients through host buffers.
nccl_checks() {
  step nccl 60 - "$BIN/pw_tests_engine" -tc="*NCCL*" --success
  if ! command -v mpirun >/dev/null || [ ! -x "$BIN/pw_mpi_check" ]; then
    say "SKIP nccl_mpi: no mpirun here (or no pw_mpi_check in the pack): NCCL between ranks not run"
    return
  fi
  local mpi="mpirun --allow-run-as-root --oversubscribe --bind-to none -np 2"
  if [ "$gpus" -ge 2 ]; then
    say "$gpus GPUs: 2 ranks, one GPU each, gradients through NCCL"
    step nccl_mpi 90 - $mpi bash -c 'CUDA_VISIBLE_DEVICES=$OMPI_COMM_WORLD_LOCAL_RANK exec "$0"' "$BIN/pw_mpi_check"
  else
    say "1 GPU: NCCL between 2 ranks is not possible (one rank per GPU); checking the error and the host path"
    step nccl_one_gpu_refused 60 - bash -c "$mpi '$BIN/pw_mpi_check' 2>&1 | tee /dev/stderr | grep -q 'each rank needs a GPU of its own'"
    step gpu_host_path 60 - env PW_NCCL=0 $mpi "$BIN/pw_mpi_check"
  fi
}

main() {
say "host $(uname -n), $(nproc) cores, $(date -u +%FT%TZ), budget ${BUDGET}s"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi || true
  nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version,clocks.max.sm --format=csv || true
else
  say "nvidia-smi not found"
fi
command -v nvcc >/dev/null && nvcc --version | tail -2

# ---- find the CUDA libraries: the toolkit, then PyTorch's nvidia-* pip packages ------------------
PY=python3
command -v "$PY" >/dev/null || PY=/opt/torch/.venv/bin/python3
libdirs=()
add_dir() {
  local d
  for d in "${libdirs[@]}"; do [ "$d" = "$1" ] && return; done
  libdirs+=("$1")
}
[ -d "$PACK/lib" ] && add_dir "$PACK/lib"
for want in libcudnn.so.9 libcublas.so.13 libcublasLt.so.13 libcudart.so.13 libnvrtc.so.13 libnccl.so.2; do
  found=""
  for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu; do
    [ -e "$d/$want" ] && found=$d && break
  done
  if [ -z "$found" ]; then
    site=$("$PY" -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null)
    for s in $site /opt/torch/.venv/lib/python3*/site-packages; do
      [ -d "$s/nvidia" ] || continue
      f=$(find "$s/nvidia" -name "$want" 2>/dev/null | head -1)
      [ -n "$f" ] && found=$(dirname "$f") && break
    done
  fi
  if [ -n "$found" ]; then
    say "$want -> $found"
    add_dir "$found"
  else
    say "$want: NOT FOUND (toolkit or pip nvidia-* packages)"
  fi
done
LD_LIBRARY_PATH=$(IFS=:; echo "${libdirs[*]}")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export LD_LIBRARY_PATH
say "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"

# ---- the programs: the carried pack, else build here --------------------------------------------
BIN=""
if [ -x "$PACK/pw_tests_engine" ]; then
  BIN=$PACK
  cat "$PACK/BUILD_INFO"
  now=$(source_hash)
  if grep -q "source_hash $now" "$PACK/BUILD_INFO"; then
    say "pack matches the sources (hash $now)"
  else
    say "WARNING: pack is STALE: sources hash $now differs from BUILD_INFO (results are for the older sources)"
  fi
else
  say "no pack at $PACK: building here"
  B=/tmp/pw-build-gpu
  cudnn_dir=""
  for d in "${libdirs[@]}"; do [ -e "$d/libcudnn.so.9" ] && cudnn_dir=$d && break; done
  cudnn_args=()
  if [ -n "$cudnn_dir" ] && [ ! -e /usr/local/cuda/include/cudnn.h ] && [ -e "$cudnn_dir/../include/cudnn.h" ]; then
    cudnn_args=(-DCUDNN_INCLUDE_DIR="$(cd "$cudnn_dir/../include" && pwd)" -DCUDNN_LIBRARY="$cudnn_dir/libcudnn.so.9")
  fi
  configure() {
    cmake -S . -B "$B" -DPW_CUDA=ON -DPW_TESTS=ON -DPW_BENCH="$1" -DPW_NATIVE=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
      -DCMAKE_BUILD_TYPE=Release "${cudnn_args[@]}" >/tmp/pw-configure.log 2>&1
  }
  bench=ON
  if ! configure ON; then
    tail -5 /tmp/pw-configure.log
    bench=OFF
    configure OFF || { tail -30 /tmp/pw-configure.log; say "configure failed: cannot build here"; }
  fi
  targets=(pw_tests_engine pw_tests_kernels pw_tests_train patchwork)
  [ "$bench" = ON ] && targets+=(bench_cuda bench_gather)
  if [ -f "$B/CMakeCache.txt" ]; then
    step build 300 - bash -c "cmake --build '$B' -j$(nproc) --target ${targets[*]} >/tmp/pw-build.log 2>&1 || { tail -40 /tmp/pw-build.log; exit 1; }"
    mkdir -p "$B/pack"
    cp "$B"/tests/pw_tests_* "$B"/cli/patchwork "$B"/lib/libpatchwork_cuda.so "$B/pack/" 2>/dev/null
    cp "$B"/bench/bench_cuda "$B"/bench/bench_gather "$B/pack/" 2>/dev/null
    [ -x "$B/pack/pw_tests_engine" ] && BIN=$B/pack
  fi
fi

if [ -z "$BIN" ]; then
  say "no test programs: nothing to run"
else
  export PATCHWORK_BIN=$BIN/patchwork  # the CLI tests' program (the compiled-in default is the build folder here)
  for p in "$BIN"/pw_tests_engine "$BIN"/bench_cuda "$BIN"/patchwork "$BIN"/libpatchwork_cuda.so; do
    [ -x "$p" ] || continue
    echo "ldd $(basename "$p"):"
    ldd "$p" | grep -E "cud|cublas|nvrtc|benchmark|not found|libstdc|libc\.so"
  done
fi

# ---- no GPU: the checks that need none, then a clear message -------------------------------------
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
if [ "${gpus:-0}" -eq 0 ]; then
  if [ -n "$BIN" ]; then
    step tests_engine_nogpu 120 tests_engine.txt "$BIN/pw_tests_engine" --duration=true -sf="*test_cuda_*"
  fi
  say "no GPU: nvidia-smi lists none; the CUDA tests above ran as 'skipped'; nothing measured"
  printf '\n==== summary ====\n%s' "$SUMMARY"
  return 0
fi

# ---- the GPU steps, most important first ----------------------------------------------------------
if [ -n "$BIN" ]; then
  # The whole programs (their CPU cases take seconds; the reference data in tests/data travel with the
  # tree; the programs find it upwards from their folder): CUDA cases are in test_cuda_*.cpp, test_patch_op.cpp,
  # test_autograd.cpp (default device) and tests/kernels/test_patch_gpu.cpp.
  step tests_engine 180 tests_engine.txt "$BIN/pw_tests_engine" --duration=true
  step tests_kernels 90 tests_kernels.txt "$BIN/pw_tests_kernels" --duration=true
  step tests_train_cli 90 tests_train_cli.txt "$BIN/pw_tests_train" \
    --duration=true -tc="cli: patchwork train*"
  nccl_checks
  # The hippocampus end to end on the device (train --device cuda, apply --device cuda, eval), when its
  # data travelled (a copy of ../shared/data/msd-task04-hippocampus in .gpudata/, carried).
  HIPPO=${PW_HIPPO_DATA:-$ROOT/.gpudata/msd-task04-hippocampus}
  if [ -d "$HIPPO/imagesTr" ]; then
    step hippocampus "${PW_HIPPO_LIMIT_S:-360}" - bash scripts/gpu_hippocampus.sh "$BIN" "$HIPPO" \
      "${PW_HIPPO_ITS:-500}" "${PW_HIPPO_TRAIN_S:-280}"
  else
    say "SKIP hippocampus: no data at $HIPPO"
  fi
  if [ -x "$BIN/bench_cuda" ]; then
    step bench_cuda 150 - "$BIN/bench_cuda" --benchmark_min_time=0.3 \
      --benchmark_out="$OUT/bench_cuda.json" --benchmark_out_format=json
  fi
fi
# PyTorch brings its own cuDNN (the toolkit's on LD_LIBRARY_PATH may be older): run it without ours.
step peer_cuda 150 - env -u LD_LIBRARY_PATH PYTHONUNBUFFERED=1 "$PY" bench/peer_cuda.py --json "$OUT/peer_cuda.json"
# Where the U-Net step's time goes: the op profile (engine/profile.h) of the step at batch 8 and 64,
# and the cuDNN algorithm searches of one conv3d forward+backward with TF32 off.
if [ -n "$BIN" ] && [ -x "$BIN/bench_cuda" ]; then
  step profile 60 - env PW_PROFILE=1 "$BIN/bench_cuda" --benchmark_filter='unet_train_step/batch:8/tf32:1' \
    --benchmark_min_time=0.5
  step profile64 60 - env PW_PROFILE=1 "$BIN/bench_cuda" --benchmark_filter='unet_train_step/batch:64/tf32:1' \
    --benchmark_min_time=0.5
  step cudnn_search 60 - env PW_CUDNN_VERBOSE=1 "$BIN/bench_cuda" \
    --benchmark_filter='conv3d_forward_backward/cin:16/cout:16/tf32:0|unet_train_step/batch:8/tf32:0' \
    --benchmark_min_time=0.2
fi
if [ -n "$BIN" ] && [ -x "$BIN/bench_gather" ]; then
  step bench_gather_cuda 90 - "$BIN/bench_gather" --benchmark_filter=BM_cuda --benchmark_min_time=0.3 \
    --benchmark_out="$OUT/bench_gather_cuda.json" --benchmark_out_format=json
fi
# A failed CUDA test run: the parity file again under compute-sanitizer (memcheck), with the time left.
if [ -n "$BIN" ] && ! grep -q "Status: SUCCESS" "$OUT/tests_engine.txt" 2>/dev/null && command -v compute-sanitizer >/dev/null; then
  step sanitizer 150 sanitizer.txt compute-sanitizer --tool memcheck --print-limit 20 "$BIN/pw_tests_engine" \
    -sf="*test_cuda_*,*test_patch_op*"
fi
nvidia-smi --query-gpu=name,temperature.gpu,clocks.sm,clocks.max.sm,power.draw --format=csv 2>/dev/null || true

printf '\n==== summary (%s s of %s) ====\n%s' "$(($(date +%s) - T0))" "$BUDGET" "$SUMMARY"
grep -h "^\[doctest\] test cases" "$OUT"/tests_*.txt 2>/dev/null
ls -la "$OUT"
}

main 2>&1 | tee "$LOG"
exit 0
