#!/usr/bin/env bash
# Installs, builds (release), makes test certificates, starts smarthost-sink as
# tenant fabrikam's stand-in Exchange Online smart host and sigrelay with
# examples/tenants.json in front of it, blasts a few thousand messages through
# the relay over STARTTLS, prints the throughput, and shows one relayed
# message as the smart host received it: signature, processed header, trace.
set -euo pipefail
cd "$(dirname "$0")/.."
work=.quickstart
messages=${QUICKSTART_MESSAGES:-3000}
connections=${QUICKSTART_CONNECTIONS:-20}
sink_port=2526    # examples/tenants.json: fabrikam's smart_host
relay_port=${QUICKSTART_PORT:-2525}

bash scripts/setup.sh
[ -f build-release/build.ninja ] || meson setup build-release --buildtype=release >/dev/null
echo "== building (release)"
ninja -C build-release >/dev/null
bash scripts/gen-certs.sh certs >/dev/null

wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on port $1"; return 1
}

rm -rf "$work" && mkdir -p "$work/received"
build-release/tools/smarthost-sink/smarthost-sink --listen 127.0.0.1:$sink_port --quiet --json \
  --tls-cert certs/smarthost.pem --tls-key certs/smarthost.key \
  --require-client-cert S5HG3DCG14.smtp.contososignatureservice.com --client-ca certs/ca.pem \
  --save-dir "$work/received" >"$work/sink.json" 2>"$work/sink.log" &
sink_pid=$!
build-release/sigrelay --listen 127.0.0.1:$relay_port --tenants examples/tenants.json \
  --tls-cert certs/relay.pem --tls-key certs/relay.key --hostname smtp.contososignatureservice.com \
  --quiet 2>"$work/relay.log" &
relay_pid=$!
trap 'kill $relay_pid $sink_pid 2>/dev/null || true' EXIT
wait_port $sink_port
wait_port $relay_port

echo "== sigrelay on 127.0.0.1:$relay_port → smarthost-sink on 127.0.0.1:$sink_port (STARTTLS, client certificate S5HG3DCG14…)"
echo "== smtp-blaster: $messages messages from jane.doe@fabrikam.com over $connections STARTTLS connections"
build-release/tools/smtp-blaster/smtp-blaster --target 127.0.0.1:$relay_port \
  --connections "$connections" --messages "$messages" --size 4096 --from jane.doe@fabrikam.com \
  --starttls --ca certs/ca.pem --tls-name smtp.contososignatureservice.com | sed 's/^/   /'

kill -TERM $relay_pid; wait $relay_pid || true
kill -TERM $sink_pid; wait $sink_pid || true
trap - EXIT
echo "== the smart host's counters"
sed 's/^/   /' "$work/sink.json"
echo "   $(ls "$work/received" | wc -l) messages saved in $work/received"

echo "== one message as the smart host received it"
# Text and HTML, as Outlook sends: the HTML signature embeds Fabrikam's logo
# (examples/tenants.json, "images"), so the message comes out with the HTML
# in a multipart/related beside the image part.
printf '%s\r\n' 'From: Jane Doe <jane.doe@fabrikam.com>' 'To: bob@example.net' 'Subject: Quarterly numbers' \
  'MIME-Version: 1.0' 'Content-Type: multipart/alternative; boundary="qs"' '' \
  '--qs' 'Content-Type: text/plain; charset=utf-8' '' 'Hi Bob,' '' 'the numbers are attached.' \
  '--qs' 'Content-Type: text/html; charset=utf-8' '' '<html><body><p>Hi Bob,</p><p>the numbers are attached.</p></body></html>' \
  '--qs--' >"$work/hello.eml"
build-release/tools/smarthost-sink/smarthost-sink --listen 127.0.0.1:$sink_port --quiet \
  --tls-cert certs/smarthost.pem --tls-key certs/smarthost.key \
  --require-client-cert S5HG3DCG14.smtp.contososignatureservice.com --client-ca certs/ca.pem \
  --save-dir "$work/one" &
sink_pid=$!
build-release/sigrelay --listen 127.0.0.1:$relay_port --tenants examples/tenants.json \
  --tls-cert certs/relay.pem --tls-key certs/relay.key --hostname smtp.contososignatureservice.com \
  2>"$work/relay-one.log" &
relay_pid=$!
trap 'kill $relay_pid $sink_pid 2>/dev/null || true' EXIT
wait_port $sink_port
wait_port $relay_port
swaks --server 127.0.0.1 --port $relay_port --tls --ehlo exo.test \
  --from jane.doe@fabrikam.com --to bob@example.net --data "@$work/hello.eml" >/dev/null
kill -TERM $relay_pid; wait $relay_pid || true
kill -TERM $sink_pid; wait $sink_pid || true
trap - EXIT
grep "queue=" "$work/relay-one.log" | sed 's/^/   log: /'
echo
cat "$work"/one/*.eml
