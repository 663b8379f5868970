#!/usr/bin/env bash
# End-to-end throughput on loopback: smtp-blaster against smarthost-sink, in
# plaintext and over STARTTLS with a tenant client certificate. (Once the relay
# lands, the same runs go through sigrelay, and side by side with Postfix and
# Haraka.) Bounded in count and time; prints one JSON line per run.
# Usage: bench/e2e.sh [MESSAGES] [CONNECTIONS] [SIZE]
set -euo pipefail
cd "$(dirname "$0")/.."
messages=${1:-20000}
connections=${2:-50}
size=${3:-4096}
build=${BUILD:-build-release}

[ -f "$build/build.ninja" ] || meson setup "$build" --buildtype=release >/dev/null
ninja -C "$build" tools/smarthost-sink/smarthost-sink tools/smtp-blaster/smtp-blaster >/dev/null
bash scripts/gen-certs.sh certs >/dev/null
sink=$build/tools/smarthost-sink/smarthost-sink
blaster=$build/tools/smtp-blaster/smtp-blaster
port=${PORT:-2599}

run() {  # label, sink flags..., -- blaster flags...
  local label=$1; shift
  local sflags=() bflags=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do sflags+=("$1"); shift; done
  shift
  bflags=("$@")
  "$sink" --listen 127.0.0.1:$port --threads 1 --quiet "${sflags[@]}" &
  local pid=$!
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
  local out
  out=$(timeout 300 "$blaster" --target 127.0.0.1:$port --connections "$connections" --messages "$messages" \
        --size "$size" --threads 1 --json "${bflags[@]}" || true)
  kill -TERM $pid; wait $pid || true
  echo "{\"run\": \"$label\", \"messages\": $messages, \"connections\": $connections, \"size\": $size, \"result\": $out}"
}

run "sink plaintext" -- 
run "sink plaintext, BDAT" -- --chunking
run "sink STARTTLS + client cert" \
  --tls-cert certs/smarthost.pem --tls-key certs/smarthost.key \
  --require-client-cert S5HG3DCG14.smtp.contososignatureservice.com --client-ca certs/ca.pem -- \
  --starttls --ca certs/ca.pem --tls-name fabrikam.mail.protection.outlook.com \
  --client-cert certs/S5HG3DCG14.pem --client-key certs/S5HG3DCG14.key
