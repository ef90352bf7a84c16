#!/usr/bin/env bash
# A CUDA build's CPU commands do not load the CUDA plugin, the CUDA runtime, cuBLAS or cuDNN
# (engine/cuda_backend.h). Each command runs with maps_at_exit.so preloaded, which writes the
# process's /proc/self/maps at exit; the map must name none of them, and must name libz (which
# patchwork links: the map was captured). Then with a stand-in driver that reports a GPU
# (fake_libcuda.c): --device cpu still loads nothing, the default device does load the plugin and its
# libraries (the control: this check can see them), and a missing plugin is one clear message.
# Usage: cuda_not_loaded.sh PATCHWORK MAPS_AT_EXIT_SO FAKE_DRIVER_DIR NIFTI_FILE
set -u
PW=$1 HELPER=$2 FAKE_DRIVER=$3 NII=$4
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
cuda_libs='lib(patchwork_cuda|cudart|cublas|cublasLt|cudnn[a-z_]*)\.so[.0-9]*'
# check NAME EXIT LOADED COMMAND...: COMMAND exits with EXIT, and its map names the CUDA libraries
# LOADED (space-separated, sorted; "" = none).
check() {
  local name=$1 want_rc=$2 want_loaded=$3
  shift 3
  PW_MAPS_OUT="$tmp/maps" LD_PRELOAD="$HELPER" "$@" >"$tmp/out" 2>&1
  local rc=$?
  if [ $rc -ne "$want_rc" ]; then
    echo "FAIL $name: exit $rc, expected $want_rc"; cat "$tmp/out"; fail=1; return
  fi
  if ! grep -q 'libz\.so' "$tmp/maps"; then
    echo "FAIL $name: the map was not captured (no libz in it)"; fail=1; return
  fi
  local loaded
  loaded=$(grep -oE "$cuda_libs" "$tmp/maps" | sed 's/\.so.*//' | sort -u | paste -sd' ')
  if [ "$loaded" != "$want_loaded" ]; then
    echo "FAIL $name: loaded '$loaded', expected '$want_loaded'"; cat "$tmp/out"; fail=1; return
  fi
  echo "ok   $name: $(grep -c . "$tmp/maps") mappings, CUDA libraries: '${loaded}'"
}
# says NAME TEXT: the last command's output holds TEXT.
says() {
  if ! grep -qF "$2" "$tmp/out"; then echo "FAIL $1: the output lacks '$2':"; cat "$tmp/out"; fail=1; fi
}

check "patchwork --version" 0 "" "$PW" --version
check "patchwork info" 0 "" "$PW" info "$NII"
check "patchwork info --stats" 0 "" "$PW" info --stats "$NII"
check "patchwork convert" 0 "" "$PW" convert "$NII" "$tmp/out.nii.gz"
check "patchwork eval" 0 "" "$PW" eval --pred "$tmp/out.nii.gz" --ref "$tmp/out.nii.gz"

# A driver reporting a GPU (the model file is missing: each command stops after choosing the device).
export LD_LIBRARY_PATH="$FAKE_DRIVER${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
apply=(apply --model "$tmp/none.safetensors" --in "$NII" --out "$tmp/seg.nii.gz")
check "GPU reported: apply --device cpu" 1 "" "$PW" "${apply[@]}" --device cpu
check "GPU reported: apply (default device)" 1 "libcublas libcublasLt libcudart libcudnn libpatchwork_cuda" \
  "$PW" "${apply[@]}"
says "GPU reported: apply (default device)" \
  "warning: running on the CPU: no CUDA GPU is available (the CUDA runtime finds none"
PW_CUDA_PLUGIN=$tmp/missing/libpatchwork_cuda.so check "GPU reported, plugin missing: apply --device cuda" 1 "" \
  "$PW" "${apply[@]}" --device cuda
says "GPU reported, plugin missing: apply --device cuda" \
  "device cuda requested but the CUDA backend libpatchwork_cuda.so was not found (looked for $tmp/missing/"
exit $fail
