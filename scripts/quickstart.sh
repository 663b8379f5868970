#!/usr/bin/env bash
# Installs, builds (release), makes test certificates, starts the stand-in
# smart host, blasts mail at it over STARTTLS with a tenant's client
# certificate, prints the throughput, and shows one message signed by the
# same code path the relay uses (sigrelay-inject with examples/tenants.json).
# The relay binary itself (transaction proxy, DESIGN §2/§8) is the next
# milestone; when it lands, the blast goes through it instead.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
work=$root/.quickstart
messages=${QUICKSTART_MESSAGES:-2000}
connections=${QUICKSTART_CONNECTIONS:-20}

bash scripts/setup.sh
[ -f build-release/build.ninja ] || meson setup build-release --buildtype=release >/dev/null
echo "== building (release)"
ninja -C build-release >/dev/null
bash scripts/gen-certs.sh certs >/dev/null

rm -rf "$work" && mkdir -p "$work/sink"
port=2526
sink=build-release/tools/smarthost-sink/smarthost-sink
"$sink" --listen 127.0.0.1:$port --threads 1 --quiet --json \
  --tls-cert certs/smarthost.pem --tls-key certs/smarthost.key \
  --require-client-cert S5HG3DCG14.smtp.contososignatureservice.com --client-ca certs/ca.pem \
  --save-dir "$work/sink" >"$work/sink.json" 2>"$work/sink.log" &
sink_pid=$!
trap 'kill $sink_pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
  sleep 0.1
done

echo "== smtp-blaster: $messages messages over $connections STARTTLS connections, tenant client certificate"
build-release/tools/smtp-blaster/smtp-blaster --target 127.0.0.1:$port \
  --connections "$connections" --messages "$messages" --size 4096 \
  --starttls --ca certs/ca.pem --tls-name fabrikam.mail.protection.outlook.com \
  --client-cert certs/S5HG3DCG14.pem --client-key certs/S5HG3DCG14.key | sed 's/^/   /'

kill -TERM $sink_pid; wait $sink_pid || true
trap - EXIT
echo "== smarthost-sink counters"
cat "$work/sink.json"
echo "   saved: $(ls "$work/sink" | wc -l) files in $work/sink"

inject=build-release/tools/sigrelay-inject/sigrelay-inject
if [ -x "$inject" ]; then
  echo "== one message signed by sigrelay-inject (examples/tenants.json, sender jane.doe@fabrikam.com)"
  printf 'From: Jane Doe <jane.doe@fabrikam.com>\r\nTo: bob@example.net\r\nSubject: Quarterly numbers\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHi Bob,\r\n\r\nthe numbers are attached.\r\n' \
    | "$inject" --tenants examples/tenants.json --from jane.doe@fabrikam.com --to bob@example.net
fi
