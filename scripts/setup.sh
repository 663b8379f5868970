#!/usr/bin/env bash
# Installs every Debian package sigrelay needs to build, test and benchmark.
# Idempotent; nothing is fetched from anywhere but Debian's archive.
set -euo pipefail
packages=(
  build-essential g++ clang libclang-rt-14-dev meson ninja-build pkg-config
  liburing-dev android-libboringssl-dev libsimdjson-dev libjemalloc-dev
  libbenchmark-dev doctest-dev
  openssl python3 swaks ca-certificates
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  echo "setup: installed ${missing[*]}"
fi
