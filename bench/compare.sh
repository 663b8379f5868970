#!/usr/bin/env bash
# sigrelay beside the set-ups it replaces, on loopback, printed as one table:
# the blaster->sink ceiling, sigrelay, Postfix with TLS on both legs, Postfix
# with the altermime content filter and (--with-haraka) Haraka, at 2 KiB,
# 20 KiB, 200 KiB and an Outlook-shaped mix of the project's MIME fixtures;
# then open-loop latency at half of sigrelay's peak and 16 messages with a
# 64 MiB attachment over BDAT. bench/compare.py holds the method.
# Postfix and altermime come from Debian (scripts/setup.sh installs them when
# no other MTA is installed); Postfix runs as a private instance whose queue
# is in /dev/shm, and needs root. Haraka is not packaged by Debian: only
# --with-haraka fetches it, from npm (pinned in compare.py), into .bench/.
# Usage: bench/compare.sh [--quick] [--with-haraka] [--sizes 2048,20480,204800,mix]
#                         [--messages N] [--connections N] [--json FILE]
#   --quick: a few hundred messages per system at 20 KiB and the mix; each
#   system x size passes when every message got 250 and reached the sink
#   (what CI runs, through the bench_compare_quick test); timings unchecked.
# Env: BUILD (default build-release).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD:-build-release}
[ -f "$build/build.ninja" ] || meson setup "$build" --buildtype=release >/dev/null
ninja -C "$build" >/dev/null
bash scripts/gen-certs.sh certs >/dev/null
exec python3 bench/compare.py --build "$build" "$@"
