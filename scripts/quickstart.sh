#!/usr/bin/env bash
# Installs, builds (release), makes test certificates, starts the stand-in
# smart host, sends mail through it over STARTTLS with a tenant's client
# certificate, prints the throughput, and shows one message signed by the
# same code path the relay uses (sigrelay-inject with examples/tenants.json).
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

echo "== sending $messages messages over $connections STARTTLS connections to smarthost-sink"
python3 - "$port" "$messages" "$connections" <<'PY'
import smtplib, ssl, sys, threading, time
port, total, conns = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
ctx = ssl.create_default_context(cafile="certs/ca.pem")
ctx.load_cert_chain("certs/S5HG3DCG14.pem", "certs/S5HG3DCG14.key")
msg = ("From: alice@fabrikam.com\r\nTo: bob@example.net\r\nSubject: quickstart\r\n\r\n"
       + "Hello from the quickstart.\r\n" * 40).encode()
ok = []
def worker(n):
    with smtplib.SMTP("127.0.0.1", port, local_hostname="quickstart.test", timeout=30) as c:
        c.starttls(context=ctx)
        for _ in range(n):
            c.sendmail("alice@fabrikam.com", ["bob@example.net"], msg)
            ok.append(1)
t0 = time.monotonic()
ts = [threading.Thread(target=worker, args=(total // conns,)) for _ in range(conns)]
[t.start() for t in ts]; [t.join() for t in ts]
dt = time.monotonic() - t0
print(f"   {len(ok)} messages accepted in {dt:.2f} s: {len(ok)/dt:.0f} messages/s "
      f"(client: Python smtplib, the bottleneck here)")
PY

kill -TERM $sink_pid; wait $sink_pid || true
trap - EXIT
echo "== smarthost-sink counters"
cat "$work/sink.json"
echo "   saved: $(ls "$work/sink" | wc -l) files in $work/sink"

inject=build-release/tools/sigrelay-inject/sigrelay-inject
if [ -x "$inject" ]; then
  echo "== one message signed by sigrelay-inject (examples/tenants.json, sender alice@fabrikam.com)"
  printf 'From: Alice <alice@fabrikam.com>\r\nTo: bob@example.net\r\nSubject: Quarterly numbers\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHi Bob,\r\n\r\nthe numbers are attached.\r\n' \
    | "$inject" --tenants examples/tenants.json --from alice@fabrikam.com --to bob@example.net
fi
