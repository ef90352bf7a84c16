#!/usr/bin/env bash
# A CUDA build's CPU commands do not load the CUDA plugin, the CUDA runtime, cuBLAS or cuDNN
# (engine/cuda_backend.h): each command runs with maps_at_exit.so preloaded, which writes the
# process's /proc/self/maps at exit, and the map must name none of them. It must name libz (which
# patchwork links): that shows the map was captured. Where the driver reports a GPU the default
# device is cuda, so commands that compute run with --device cpu; info and --version never compute.
# Usage: cuda_not_loaded.sh PATCHWORK MAPS_AT_EXIT_SO NIFTI_FILE
set -u
PW=$1 HELPER=$2 NII=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() {  # check NAME COMMAND...
  local name=$1
  shift
  PW_MAPS_OUT="$tmp/maps" LD_PRELOAD="$HELPER" "$@" >"$tmp/out" 2>&1
  local rc=$?
  if [ $rc -ne 0 ]; then
    echo "FAIL $name: exit $rc"; cat "$tmp/out"; fail=1; return
  fi
  if ! grep -q 'libz\.so' "$tmp/maps"; then
    echo "FAIL $name: the map was not captured (no libz in it)"; fail=1; return
  fi
  local loaded
  loaded=$(grep -oE 'lib(patchwork_cuda|cudart|cublas|cublasLt|cudnn[a-z_]*)\.so[.0-9]*' "$tmp/maps" | sort -u | paste -sd' ')
  if [ -n "$loaded" ]; then
    echo "FAIL $name: loaded $loaded"; fail=1; return
  fi
  echo "ok   $name: $(grep -c . "$tmp/maps") mappings, no CUDA library"
}
check "patchwork --version" "$PW" --version
check "patchwork info" "$PW" info "$NII"
check "patchwork info --stats" "$PW" info --stats "$NII"
check "patchwork convert" "$PW" convert "$NII" "$tmp/out.nii.gz"
check "patchwork eval" "$PW" eval --pred "$tmp/out.nii.gz" --ref "$tmp/out.nii.gz"
exit $fail
