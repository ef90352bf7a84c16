#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages Patchwork builds with (only those missing). Run as root or with sudo.
set -euo pipefail
pkgs=(build-essential cmake zlib1g-dev libeigen3-dev nlohmann-json3-dev libcli11-dev doctest-dev libbenchmark-dev ccache python3 python3-nibabel
      libopenmpi-dev openmpi-bin python3-dev pybind11-dev python3-numpy python3-pytest)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
