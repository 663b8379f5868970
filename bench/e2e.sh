#!/usr/bin/env bash
# End-to-end throughput on loopback, all three programs on this one machine:
#   1. smtp-blaster → smarthost-sink (the sink's own ceiling)
#   2. smtp-blaster → smarthost-sink over STARTTLS with a tenant certificate
#   3. smtp-blaster → sigrelay → smarthost-sink: STARTTLS on both legs, the
#      tenant's client certificate, every message signed (the product)
#   4. as 3 with BDAT from the client
# Bounded in count and time; prints one JSON line per run.
# Usage: bench/e2e.sh [--quick] [MESSAGES] [CONNECTIONS] [SIZE]   (env: RELAY_THREADS, BUILD, METRICS_PORT)
#   --quick: 500 messages over 10 connections, a smoke run of every path in
#   a few seconds (needs only what scripts/setup.sh installs).
# The relay runs are also given relay_sends_per_message: sendmsg operations
# per message on both legs, from its /metrics (sigrelay_socket_sends_total).
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
if [ "${1:-}" = "--quick" ]; then quick=1; shift; fi
if [ $quick = 1 ]; then
  messages=${1:-500}; connections=${2:-10}
else
  messages=${1:-20000}; connections=${2:-50}
fi
size=${3:-4096}
build=${BUILD:-build-release}
relay_threads=${RELAY_THREADS:-1}

[ -f "$build/build.ninja" ] || meson setup "$build" --buildtype=release >/dev/null
ninja -C "$build" >/dev/null
bash scripts/gen-certs.sh certs >/dev/null
sink=$build/tools/smarthost-sink/smarthost-sink
blaster=$build/tools/smtp-blaster/smtp-blaster
relay=$build/sigrelay
sink_port=2526     # examples/tenants.json: fabrikam's smart host
relay_port=${RELAY_PORT:-2599}
tls_sink=(--tls-cert certs/smarthost.pem --tls-key certs/smarthost.key
          --require-client-cert S5HG3DCG14.smtp.contososignatureservice.com --client-ca certs/ca.pem)

wait_port() {
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  return 1
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # utime + stime, 1/100 s

metrics_port=${METRICS_PORT:-2597}
# A counter of the relay's /metrics, summed over shards (bash's /dev/tcp: no curl needed).
relay_metric() {
  local out
  exec 3<>"/dev/tcp/127.0.0.1/$metrics_port" || { echo 0; return; }
  printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3
  out=$(cat <&3)
  exec 3<&-
  awk -v m="$1" 'index($0, m "{") == 1 {s += $2} END {print s + 0}' <<<"$out"
}

blast() {  # label port server-pid blaster-flags...
  local label=$1 port=$2 server=$3; shift 3
  local out c0 c1 s0=0 s1=0 extra=""
  [ "$server" = "${rpid:-}" ] && s0=$(relay_metric sigrelay_socket_sends_total)
  c0=$(cpu_ticks "$server")
  out=$(timeout 300 "$blaster" --target 127.0.0.1:$port --connections "$connections" --messages "$messages" \
        --size "$size" --from jane.doe@fabrikam.com --json "$@" || true)
  c1=$(cpu_ticks "$server")
  if [ "$server" = "${rpid:-}" ]; then
    s1=$(relay_metric sigrelay_socket_sends_total)
    # sendmsg operations per message, both legs (sigrelay_socket_sends_total).
    extra=", \"relay_sends_per_message\": $(awk "BEGIN{printf \"%.2f\", ($s1-$s0)/$messages}")"
  fi
  # The server's own CPU time: messages per CPU-second is the per-core figure
  # (blaster, sink and relay share this machine's cores).
  echo "{\"run\": \"$label\", \"messages\": $messages, \"connections\": $connections, \"size\": $size, \"server_cpu_seconds\": $(awk "BEGIN{print ($c1-$c0)/100}")$extra, \"result\": ${out:-null}}"
}

"$sink" --listen 127.0.0.1:$sink_port --quiet &
pid=$!; wait_port $sink_port
blast "blaster -> sink, plaintext" $sink_port $pid
kill -TERM $pid; wait $pid || true

"$sink" --listen 127.0.0.1:$sink_port --quiet "${tls_sink[@]}" &
pid=$!; wait_port $sink_port
blast "blaster -> sink, STARTTLS + client certificate" $sink_port $pid \
  --starttls --ca certs/ca.pem --tls-name fabrikam.mail.protection.outlook.com \
  --client-cert certs/S5HG3DCG14.pem --client-key certs/S5HG3DCG14.key

"$relay" --listen 127.0.0.1:$relay_port --tenants examples/tenants.json --threads "$relay_threads" \
  --tls-cert certs/relay.pem --tls-key certs/relay.key --quiet --metrics-listen "$metrics_port" &
rpid=$!; wait_port $relay_port; wait_port "$metrics_port"
blast "blaster -> sigrelay ($relay_threads shard) -> sink, STARTTLS both legs, signed" $relay_port $rpid \
  --starttls --ca certs/ca.pem --tls-name smtp.contososignatureservice.com
blast "blaster -> sigrelay ($relay_threads shard) -> sink, BDAT, STARTTLS both legs, signed" $relay_port $rpid \
  --starttls --ca certs/ca.pem --tls-name smtp.contososignatureservice.com --chunking
kill -TERM $rpid; wait $rpid || true
kill -TERM $pid; wait $pid || true
