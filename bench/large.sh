#!/usr/bin/env bash
# Large messages through the streaming data plane, on loopback, all programs on
# this one machine (smtp-blaster -> sigrelay -> smarthost-sink, STARTTLS on both
# legs, the tenant's client certificate toward the sink):
#   1. memory and throughput with large messages, sigrelay with default flags
#      and --threads 1 and 2 (a fresh relay per run, so VmHWM is that run's):
#      16 concurrent messages with a 64 MiB base64 attachment, 8 concurrent
#      48 MiB single-part text messages (larger than --max-signed-part, so
#      relayed stamped and unsigned), one 150 MiB message (the size limit);
#      each over BDAT on both legs and over DATA on both legs (sink
#      --no-chunking, blaster without --chunking). The claim checked:
#      the relay's peak RSS stays under 512 MiB with default flags;
#   2. a slow smart host: bench/throttle.py between the relay and the sink
#      forwards relay -> sink at a fixed rate (TCP-level, so STARTTLS passes
#      through); 8 clients send 32 MiB messages for a bounded time while the
#      relay's VmRSS is sampled every 0.5 s. The claim: memory stays flat
#      while clients are slowed (back-pressure) and no message fails;
#   3. latency isolation on a 1-shard relay: 4 KiB messages at 200/s on their
#      own connections, alone and while 100 MiB messages pass through
#      (one at a time, back to back, on another connection);
#   4. messages/s at 4 KiB and 20 KiB (50 connections, STARTTLS both legs, DATA
#      and BDAT from the client, 1 shard as in bench/e2e.sh), to set beside
#      the README's figures (printed only, no regression check); each line
#      has the outbound connections the relay opened during the run (with
#      the default --pool-size 8 of idle connections kept and 50 clients,
#      the pool closes and reopens connections: compare with --pool-size 50).
# Prints one JSON line per run. VmHWM/VmRSS are from /proc/PID/status (kB).
# The relay's stderr (per-message log lines) goes to .bench/large/logs/.
# Messages are generated once (deterministic) into .bench/large/corpus/.
# Usage: bench/large.sh [--quick]
#   --quick: every path with small sizes, in well under a minute.
# Env: BUILD (build-release), PARTS (e.g. "13": only parts 1 and 3; default
# 1234), RELAY_PORT (2599), METRICS_PORT (2598), THROTTLE_PORT (2536),
# THROTTLE_RATE (bytes/s, 4000000), THROTTLE_SCOPE (connection|all:
# a bucket per smart-host connection, or one for the whole link).
# The sink listens on 127.0.0.1:2526, fabrikam's smart host in examples/tenants.json.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
quick=0
if [ "${1:-}" = "--quick" ]; then quick=1; shift; fi
build=${BUILD:-build-release}
parts=${PARTS:-1234}
sink_port=2526
relay_port=${RELAY_PORT:-2599}
metrics_port=${METRICS_PORT:-2598}
throttle_port=${THROTTLE_PORT:-2536}
throttle_rate=${THROTTLE_RATE:-4000000}
throttle_scope=${THROTTLE_SCOPE:-connection}
MiB=1048576
if [ $quick = 1 ]; then
  attach_raw=$((1 * MiB))        # part 1: 16 x a message with this attachment
  text_size=$((10 * MiB))        # part 1: 8 x single-part text (still > --max-signed-part)
  max_size=$((12 * MiB))         # part 1: the one "150 MiB" message
  slow_size=$((2 * MiB)); slow_seconds=3
  big_size=$((10 * MiB)); lat_seconds=3
  small_messages=2000
else
  attach_raw=$((64 * MiB))
  text_size=$((48 * MiB))
  max_size=$((150 * MiB))        # sigrelay's default --max-message-size, exactly
  slow_size=$((32 * MiB)); slow_seconds=20
  big_size=$((100 * MiB)); lat_seconds=10
  small_messages=20000
fi

[ -f "$build/build.ninja" ] || meson setup "$build" --buildtype=release >/dev/null
ninja -C "$build" >/dev/null
bash scripts/gen-certs.sh certs >/dev/null
sink=$build/tools/smarthost-sink/smarthost-sink
blaster=$build/tools/smtp-blaster/smtp-blaster
relay=$build/sigrelay
work=$root/.bench/large
mkdir -p "$work/corpus" "$work/logs"
rm -f "$work"/logs/*

# ---- helpers -------------------------------------------------------------------
wait_port() {
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  return 1
}
port_free() {
  if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then echo "large.sh: port $1 is in use" >&2; exit 1; fi
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # utime + stime, 1/100 s
status_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }  # pid VmHWM|VmRSS
num() { sed -n "s/.*\"$1\": \([0-9.]*\).*/\1/p" <<<"$2" | head -1; }  # field json
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# Sums one metric over the relay's shards (Prometheus text over /dev/tcp, no curl).
metrics_text() {
  exec 5<>"/dev/tcp/127.0.0.1/$metrics_port" || return 0
  printf 'GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&5
  cat <&5 || true
  exec 5<&-
}
metric_sum() { awk -v m="$1" '$1 == m || index($1, m "{") == 1 {s += $2} END {printf "%.0f", s}' <<<"$2"; }
metrics_json() {
  local t; t=$(metrics_text)
  local out="" m
  for m in relayed signed stamped abandoned smart_host_4xx smart_host_5xx outbound_failures timeouts \
           memory_budget_waits outbound_connects outbound_reuses; do
    out+="${out:+, }\"$m\": $(metric_sum "sigrelay_${m}_total" "$t")"
  done
  echo "{$out}"
}

# Deterministic messages, generated once: kind size file.
#   attach N: multipart/mixed, a short text/plain body (gets the signature) and
#             an N-byte attachment (seeded PRNG), base64 in 76-character lines;
#   attach-total N: the same with the attachment sized so the message is <= N bytes (within 78);
#   text N:   one text/plain part of N bytes, us-ascii lines (some start with "." for DATA's stuffing).
gen() {
  local kind=$1 size=$2 dir=$work/corpus/$1-$2
  if [ ! -f "$dir/message.eml" ]; then
    mkdir -p "$dir"
    python3 - "$kind" "$size" "$dir/message.eml" <<'PY'
import base64, os, random, sys
kind, size, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rng = random.Random(20261129)
def head(subject, ctype):
    return ("From: Jane Doe <jane.doe@fabrikam.com>\r\nTo: Bob <bob@example.net>\r\n"
            f"Subject: {subject}\r\nDate: Sun, 29 Nov 2026 10:00:00 +0000\r\n"
            f"Message-ID: <{kind}-{size}@bench.sigrelay.localhost>\r\nMIME-Version: 1.0\r\n{ctype}\r\n").encode()
tmp = path + ".tmp"
with open(tmp, "wb") as f:
    if kind in ("attach", "attach-total"):
        b = "=_sigrelay_bench_7c1f0e"
        pre = head(f"large.sh: {kind} {size}", f'Content-Type: multipart/mixed; boundary="{b}"\r\n')
        pre += (f"This is a multi-part message in MIME format.\r\n\r\n--{b}\r\n"
                "Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
                "Hello Bob,\r\n\r\nthe data set is attached.\r\n\r\nJane\r\n\r\n"
                f"--{b}\r\nContent-Type: application/octet-stream; name=\"data.bin\"\r\n"
                "Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"data.bin\"\r\n\r\n").encode()
        post = f"--{b}--\r\n".encode()
        raw = size if kind == "attach" else (size - len(pre) - len(post)) // 78 * 57
        f.write(pre)
        step = 57 * 16384  # whole 76-character lines per chunk
        left = raw
        while left > 0:
            n = min(step, left)
            f.write(base64.encodebytes(rng.randbytes(n)).replace(b"\n", b"\r\n"))
            left -= n
        f.write(post)
    elif kind == "text":
        words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(2000)]
        lines = []
        for i in range(16384):
            line = b""
            while len(line) < 66:
                line += rng.choice(words) + b" "
            lines.append((b"." if i % 97 == 0 else b"") + line.rstrip() + b"\r\n")
        block = b"".join(lines)
        pre = head(f"large.sh: text {size}", "Content-Type: text/plain; charset=us-ascii\r\n"
                   "Content-Transfer-Encoding: 7bit\r\n")
        f.write(pre)
        left = size - len(pre)
        while left > len(block) + 80:
            f.write(block); left -= len(block)
        for line in lines:
            if left < len(line) + 80: break
            f.write(line); left -= len(line)
        f.write(b"x" * (left - 2) + b"\r\n")
    else:
        sys.exit(f"gen: unknown kind {kind}")
os.rename(tmp, path)
PY
  fi
  echo "$dir"
}
corpus_bytes() { stat -c %s "$1/message.eml"; }

start_sink() {  # extra sink flags...
  port_free $sink_port
  "$sink" --listen 127.0.0.1:$sink_port --quiet --json --max-message-size $((200 * MiB)) \
    --tls-cert certs/smarthost.pem --tls-key certs/smarthost.key \
    --require-client-cert S5HG3DCG14.smtp.contososignatureservice.com --client-ca certs/ca.pem "$@" \
    > "$work/sink.json" &
  sink_pid=$!; pids+=("$sink_pid")
  wait_port $sink_port
}
# Not in $(...): wait needs the shell that started the sink. Sets sinkj.
stop_sink() { kill -TERM "$sink_pid"; wait "$sink_pid" || true; sinkj=$(cat "$work/sink.json"); }

relay_n=0
start_relay() {  # threads tenants-file extra relay flags...
  local threads=$1 tenants=$2; shift 2
  port_free "$relay_port"; port_free "$metrics_port"
  relay_n=$((relay_n + 1))
  relay_log=$work/logs/relay-$relay_n.log
  "$relay" --listen 127.0.0.1:"$relay_port" --tenants "$tenants" --threads "$threads" \
    --tls-cert certs/relay.pem --tls-key certs/relay.key --metrics-listen 127.0.0.1:"$metrics_port" "$@" \
    2> "$relay_log" &
  relay_pid=$!; pids+=("$relay_pid")
  wait_port "$relay_port"; wait_port "$metrics_port"
}
stop_relay() { kill -TERM "$relay_pid"; wait "$relay_pid" || true; }

to_relay=(--target 127.0.0.1:"$relay_port" --from jane.doe@fabrikam.com --starttls --ca certs/ca.pem
          --tls-name smtp.contososignatureservice.com --json)

# ---- 1. peak RSS and MB/s with large messages ---------------------------------------
large_run() {  # label threads mode(bdat|data) corpus-dir messages
  local label=$1 threads=$2 mode=$3 dir=$4 n=$5
  local sink_flags=() blaster_flags=()
  if [ "$mode" = data ]; then sink_flags=(--no-chunking); else blaster_flags=(--chunking); fi
  start_sink "${sink_flags[@]}"
  start_relay "$threads" examples/tenants.json
  local idle c0 c1 out hwm rss m sinkj
  idle=$(status_kb "$relay_pid" VmHWM)
  c0=$(cpu_ticks "$relay_pid")
  out=$(timeout 150 "$blaster" "${to_relay[@]}" --connections "$n" --messages "$n" --corpus "$dir" \
        "${blaster_flags[@]}" || true)
  c1=$(cpu_ticks "$relay_pid")
  hwm=$(status_kb "$relay_pid" VmHWM); rss=$(status_kb "$relay_pid" VmRSS)
  m=$(metrics_json)
  stop_relay
  stop_sink
  echo "{\"part\": 1, \"run\": \"$label\", \"relay_threads\": $threads, \"legs\": \"$mode\", \"messages\": $n," \
       "\"concurrent\": $n, \"message_bytes\": $(corpus_bytes "$dir"), \"mb_per_second\": $(num mb_per_second "$out")," \
       "\"relay_vmhwm_kb\": $hwm, \"relay_vmhwm_under_512_mib\": $([ "$hwm" -lt 524288 ] && echo true || echo false)," \
       "\"relay_vmrss_end_kb\": $rss, \"relay_vmhwm_idle_kb\": $idle," \
       "\"relay_cpu_seconds\": $(awk "BEGIN{print ($c1-$c0)/100}"), \"relay_metrics\": $m," \
       "\"relay_log\": \"${relay_log#"$root"/}\", \"client\": ${out:-null}, \"sink\": ${sinkj:-null}}"
}

if [[ $parts == *1* ]]; then
  attach=$(gen attach $attach_raw)
  text=$(gen text $text_size)
  maxmsg=$(gen attach-total $max_size)
  for threads in 1 2; do
    for mode in bdat data; do
      large_run "16 x $((attach_raw / MiB)) MiB attachment (base64)" $threads $mode "$attach" 16
      large_run "8 x $((text_size / MiB)) MiB single-part text" $threads $mode "$text" 8
      large_run "1 x $((max_size / MiB)) MiB message (attachment)" $threads $mode "$maxmsg" 1
    done
  done
fi

# ---- 2. a slow smart host: back-pressure ------------------------------------------------
if [[ $parts == *2* ]]; then
  slow=$(gen attach-total $slow_size)
  tdir=$work/throttle
  mkdir -p "$tdir"
  # The examples' templates and directories next to a tenants file whose
  # smart host is the proxy (as tests/integration/relay_test.py's tenants_file()).
  python3 - "$root" "$tdir" "$throttle_port" <<'PY'
import json, os, shutil, sys
root, d, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
ex = os.path.join(root, "examples")
for item in ("fabrikam", "contoso", "fabrikam-users.ndjson", "contoso-users.ndjson"):
    src, dst = os.path.join(ex, item), os.path.join(d, item)
    if os.path.isdir(dst): shutil.rmtree(dst)
    (shutil.copytree if os.path.isdir(src) else shutil.copy)(src, dst)
with open(os.path.join(ex, "tenants.json")) as f:
    t = json.load(f)
certs = os.path.join(root, "certs")
for tenant in t["tenants"]:
    for k in ("smart_host_ca", "client_cert", "client_key"):
        tenant[k] = os.path.join(certs, os.path.basename(tenant[k]))
    if tenant["id"] == "fabrikam":
        tenant["smart_host"] = f"127.0.0.1:{port}"  # tls_domain unchanged: certificate checks still pass
with open(os.path.join(d, "tenants.json"), "w") as f:
    json.dump(t, f, indent=2)
PY
  start_sink
  port_free "$throttle_port"
  scope_flag=(); [ "$throttle_scope" = connection ] && scope_flag=(--per-connection)
  python3 bench/throttle.py --listen 127.0.0.1:"$throttle_port" --target 127.0.0.1:$sink_port \
    --rate "$throttle_rate" "${scope_flag[@]}" > "$work/throttle.json" 2> "$work/logs/throttle.log" &
  throttle_pid=$!; pids+=("$throttle_pid")
  wait_port "$throttle_port"
  start_relay 2 "$tdir/tenants.json"
  samples=$work/rss-samples
  : > "$samples"
  ( while kill -0 "$relay_pid" 2>/dev/null; do
      t=$(metrics_text 2>/dev/null || true)
      echo "$(status_kb "$relay_pid" VmRSS) $(metric_sum sigrelay_memory_held_bytes "$t")" >> "$samples"
      sleep 0.5
    done ) &
  sampler_pid=$!
  out=$(timeout 150 "$blaster" "${to_relay[@]}" --connections 8 --messages 0 --duration "$slow_seconds" \
        --corpus "$slow" --chunking || true)
  kill "$sampler_pid" 2>/dev/null || true; wait "$sampler_pid" 2>/dev/null || true
  hwm=$(status_kb "$relay_pid" VmHWM)
  m=$(metrics_json)
  stop_relay
  kill -TERM "$throttle_pid"; wait "$throttle_pid" || true
  stop_sink
  series=$(awk 'NF == 2 {printf "%s%s", (NR > 1 ? ", " : ""), $1}' "$samples")
  stats=$(awk 'NF == 2 {n++; r[n] = $1; if ($2 > h) h = $2}
               END {mx = 0; mn = r[1]; for (i = 1; i <= n; i++) {if (r[i] > mx) mx = r[i]; if (r[i] < mn) mn = r[i]}
                    a = 0; b = 0; for (i = 1; i <= n; i++) {if (i <= n / 2) {if (r[i] > a) a = r[i]} else if (r[i] > b) b = r[i]}
                    printf "\"samples\": %d, \"vmrss_max_kb\": %d, \"vmrss_last_kb\": %d, \"vmrss_min_kb\": %d, \"vmrss_max_first_half_kb\": %d, \"vmrss_max_second_half_kb\": %d, \"memory_held_max_bytes\": %d", n, mx, r[n], mn, a, b, h}' "$samples")
  echo "{\"part\": 2, \"run\": \"slow smart host: 8 clients x $((slow_size / MiB)) MiB for ${slow_seconds} s, relay -> sink at $throttle_rate B/s per $throttle_scope\"," \
       "\"relay_threads\": 2, \"legs\": \"bdat\", \"message_bytes\": $(corpus_bytes "$slow"), $stats," \
       "\"relay_vmhwm_kb\": $hwm, \"mb_per_second\": $(num mb_per_second "$out"), \"relay_metrics\": $m," \
       "\"vmrss_series_kb\": [$series], \"client\": ${out:-null}, \"sink\": ${sinkj:-null}," \
       "\"throttle\": $(cat "$work/throttle.json" 2>/dev/null || echo null)}"
fi

# ---- 3. latency isolation on one shard --------------------------------------------------
if [[ $parts == *3* ]]; then
  big=$(gen attach-total $big_size)
  small=(--connections 10 --messages 0 --rate 200 --duration "$lat_seconds" --size 4096 --chunking)
  # The sink gets a shard per CPU so that it is not the one serialising the big
  # and the small messages; the relay has one shard.
  lat_run() {  # label with-big(0|1)
    start_sink --threads 0
    start_relay 1 examples/tenants.json
    local out bigout="null" bigpid hwm
    if [ "$2" = 1 ]; then
      timeout 150 "$blaster" "${to_relay[@]}" --connections 1 --messages 0 --duration $((lat_seconds + 1)) \
        --corpus "$big" --chunking > "$work/big.json" &
      bigpid=$!
      sleep 1  # the first big message is on its way
    fi
    out=$(timeout 150 "$blaster" "${to_relay[@]}" "${small[@]}" || true)
    if [ "$2" = 1 ]; then wait "$bigpid" || true; bigout=$(cat "$work/big.json"); fi
    hwm=$(status_kb "$relay_pid" VmHWM)
    stop_relay
    stop_sink
    echo "{\"part\": 3, \"run\": \"$1\", \"relay_threads\": 1, \"small_p50_ms\": $(num p50 "$out")," \
         "\"small_p99_ms\": $(num p99 "$out"), \"small_accepted\": $(num accepted "$out"), \"relay_vmhwm_kb\": $hwm," \
         "\"big_message_bytes\": $([ "$2" = 1 ] && corpus_bytes "$big" || echo 0), \"small\": ${out:-null}," \
         "\"big\": ${bigout:-null}, \"sink\": ${sinkj:-null}}"
  }
  lat_run "4 KiB at 200/s on 10 connections for ${lat_seconds} s, alone" 0
  lat_run "4 KiB at 200/s on 10 connections for ${lat_seconds} s, while $((big_size / MiB)) MiB messages pass (1 connection, back to back)" 1
fi

# ---- 4. messages/s with small messages ---------------------------------------------------
if [[ $parts == *4* ]]; then
  start_sink
  start_relay 1 examples/tenants.json --quiet
  for size in 4096 20480; do
    for mode in data bdat; do
      flags=(); [ $mode = bdat ] && flags=(--chunking)
      t=$(metrics_text); k0=$(metric_sum sigrelay_outbound_connects_total "$t")
      c0=$(cpu_ticks "$relay_pid")
      out=$(timeout 150 "$blaster" "${to_relay[@]}" --connections 50 --messages "$small_messages" --size $size \
            "${flags[@]}" || true)
      c1=$(cpu_ticks "$relay_pid")
      t=$(metrics_text); k1=$(metric_sum sigrelay_outbound_connects_total "$t")
      cpu=$(awk "BEGIN{print ($c1-$c0)/100}")
      acc=$(num accepted "$out")
      echo "{\"part\": 4, \"run\": \"$small_messages x $size B, 50 connections, STARTTLS both legs, $mode from the client\"," \
           "\"relay_threads\": 1, \"size\": $size, \"messages_per_second\": $(num messages_per_second "$out")," \
           "\"p50_ms\": $(num p50 "$out"), \"p99_ms\": $(num p99 "$out"), \"relay_cpu_seconds\": $cpu," \
           "\"messages_per_relay_cpu_second\": $(awk "BEGIN{printf \"%.0f\", ($cpu > 0 ? ${acc:-0}/$cpu : 0)}")," \
           "\"relay_outbound_connects\": $((k1 - k0))," \
           "\"client\": ${out:-null}}"
    done
  done
  hwm=$(status_kb "$relay_pid" VmHWM)
  stop_relay
  stop_sink
  echo "{\"part\": 4, \"run\": \"sink counters and relay peak over part 4\", \"relay_vmhwm_kb\": $hwm, \"sink\": ${sinkj:-null}}"
fi
