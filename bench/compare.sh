#!/usr/bin/env bash
# Side by side on loopback: the same load through sigrelay and through the
# classic set-up it replaces — Postfix with an altermime content filter — both
# relaying to smarthost-sink over STARTTLS with the tenant's client
# certificate. Throughput is end to end: from the first message sent until the
# last one has arrived at the sink (Postfix says 250 when its queue has the
# message; sigrelay only when the smart host has it).
# Installs postfix and altermime from Debian (bench only; the tests never need
# them) and runs a private Postfix instance under .bench/postfix; it adds that
# folder to alternate_config_directories in /etc/postfix/main.cf, which
# Postfix requires. altermime adds the same signature to every message (it
# cannot render per-sender signatures); sigrelay renders each sender's.
# The third run is Haraka (npm, pinned below, installed into .bench/haraka-node)
# with the config and plugins in bench/haraka: the same static signature and
# header as altermime, forwarded with queue/smtp_forward, which opens one
# STARTTLS connection to the sink per message and answers 250 only once the
# sink has it.
# Usage: bench/compare.sh [MESSAGES] [CONNECTIONS] [SIZE]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
messages=${1:-5000}
connections=${2:-20}
size=${3:-4096}
build=${BUILD:-build-release}
work=$root/.bench
sink_port=2526 relay_port=2599 postfix_port=2527 haraka_port=2528  # Haraka's ports: bench/haraka/config
haraka_version=3.3.4

if ! command -v postfix >/dev/null || ! command -v altermime >/dev/null; then
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix altermime >/dev/null
fi
[ -f "$build/build.ninja" ] || meson setup "$build" --buildtype=release >/dev/null
ninja -C "$build" >/dev/null
bash scripts/gen-certs.sh certs >/dev/null
sink=$build/tools/smarthost-sink/smarthost-sink
blaster=$build/tools/smtp-blaster/smtp-blaster

wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
count() { find "$1" -name '*.eml' | wc -l; }

start_sink() {  # save-dir
  "$sink" --listen 127.0.0.1:$sink_port --quiet --save-dir "$1" \
    --tls-cert certs/smarthost.pem --tls-key certs/smarthost.key \
    --require-client-cert S5HG3DCG14.smtp.contososignatureservice.com --client-ca certs/ca.pem &
  sink_pid=$!
  wait_port $sink_port
}

# Blasts, then waits until every message is at the sink; prints one JSON line.
run() {  # label port save-dir
  local label=$1 port=$2 dir=$3 t0 t1 out
  t0=$(date +%s.%N)
  out=$("$blaster" --target 127.0.0.1:$port --connections "$connections" --messages "$messages" --size "$size" \
        --from jane.doe@fabrikam.com --starttls --ca certs/ca.pem --tls-name smtp.contososignatureservice.com --json)
  for _ in $(seq 1200); do [ "$(count "$dir")" -ge "$messages" ] && break; sleep 0.05; done
  t1=$(date +%s.%N)
  local arrived; arrived=$(count "$dir")
  local signed; signed=$(grep -l "Jane Doe" "$dir"/*.eml 2>/dev/null | wc -l || true)
  echo "{\"run\": \"$label\", \"messages\": $messages, \"arrived\": $arrived, \"signed\": $signed, \"end_to_end_seconds\": $(awk "BEGIN{print $t1-$t0}"), \"end_to_end_messages_per_second\": $(awk "BEGIN{printf \"%.0f\", $arrived/($t1-$t0)}"), \"client\": $out}"
}

# ---- sigrelay --------------------------------------------------------------
# Keep the Haraka install (.bench/haraka-node) between runs; clear the rest.
mkdir -p "$work"
find "$work" -mindepth 1 -maxdepth 1 ! -name haraka-node -exec rm -rf {} +
mkdir -p "$work/sig-received" "$work/pf-received" "$work/haraka-received"
start_sink "$work/sig-received"
"$build/sigrelay" --listen 127.0.0.1:$relay_port --tenants examples/tenants.json \
  --tls-cert certs/relay.pem --tls-key certs/relay.key --quiet &
relay_pid=$!
wait_port $relay_port
run "sigrelay (transaction proxy, all cores)" $relay_port "$work/sig-received"
kill -TERM $relay_pid; wait $relay_pid || true
kill -TERM $sink_pid; wait $sink_pid || true

# ---- Postfix + altermime -----------------------------------------------------
pf=$work/postfix
mkdir -p "$pf/etc" "$pf/spool" "$pf/filter"
chmod 1777 "$pf/filter"
# The static signature the other set-ups add: Jane Doe's, rendered by hand
# (altermime and the Haraka plugin cannot render per-sender templates).
render_static() {  # template
  sed -e '/^{{[#^\/][a-z_]*}}$/d' \
      -e 's/{{display_name}}/Jane Doe/g; s/{{title}}/Chief Executive Officer/g; s/{{department}}/Management/g' \
      -e 's/{{phone}}/+1 425 555 0100/g; s/{{mobile}}/+1 425 555 0101/g; s/{{email}}/jane.doe@fabrikam.com/g' \
      -e 's/{{[#^\/][a-z_]*}}//g' "$1"
}
render_static examples/fabrikam/default.txt > "$pf/disclaimer.txt"
render_static examples/fabrikam/default.html > "$pf/disclaimer.html"
cat > "$pf/filter.sh" <<FILTER
#!/bin/sh
# altermime content filter (the classic Postfix "simple filter" recipe).
cd $pf/filter || exit 75
trap 'rm -f in.\$\$' 0 1 2 3 15
cat > in.\$\$ || exit 75
/usr/bin/altermime --input=in.\$\$ --disclaimer=$pf/disclaimer.txt --disclaimer-html=$pf/disclaimer.html \
  --xheader="SignatureContoso: true" >/dev/null || exit 75
/usr/sbin/sendmail -C $pf/etc -G -i "\$@" < in.\$\$
exit \$?
FILTER
chmod 755 "$pf/filter.sh"
cat > "$pf/etc/main.cf" <<MAIN
compatibility_level = 3.6
queue_directory = $pf/spool
data_directory = $pf/data
myhostname = postfix.bench.localhost
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:$sink_port
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_tls_cert_file = $root/certs/relay.pem
smtpd_tls_key_file = $root/certs/relay.key
smtpd_tls_security_level = may
smtp_tls_security_level = encrypt
smtp_tls_cert_file = $root/certs/S5HG3DCG14.pem
smtp_tls_key_file = $root/certs/S5HG3DCG14.key
smtp_tls_CAfile = $root/certs/ca.pem
smtp_connection_cache_on_demand = yes
default_process_limit = 200
maillog_file = $pf/maillog
maillog_file_prefixes = $work
alias_maps =
alias_database =
MAIN
sed -e 's/^smtp      inet/#smtp      inet/' /etc/postfix/master.cf > "$pf/etc/master.cf"
sed -i 's/^postlog .*$/postlog   unix-dgram n  -       n       -       1       postlogd/' "$pf/etc/master.cf"
cat >> "$pf/etc/master.cf" <<MASTER
127.0.0.1:$postfix_port inet n - n - - smtpd -o content_filter=altermime:dummy
altermime unix - n n - 50 pipe flags=Rq user=nobody null_sender= argv=$pf/filter.sh -f \${sender} -- \${recipient}
MASTER
# Postfix honours another config directory only when the default main.cf
# names it (a safety rule for set-gid programs such as postdrop).
touch /etc/postfix/main.cf
grep -q "^alternate_config_directories = $pf/etc" /etc/postfix/main.cf ||
  postconf -e "alternate_config_directories = $pf/etc"
postfix -c "$pf/etc" check || { echo "postfix check failed (see $pf/maillog)"; exit 1; }
start_sink "$work/pf-received"
postfix -c "$pf/etc" start >/dev/null 2>&1
wait_port $postfix_port
run "postfix 3.7 + altermime content filter" $postfix_port "$work/pf-received"
postfix -c "$pf/etc" stop >/dev/null 2>&1 || true
kill -TERM $sink_pid; wait $sink_pid || true

# ---- Haraka -------------------------------------------------------------------
# Haraka from npm (pinned) with bench/haraka: the tls plugin offers STARTTLS
# with the relay's certificate, the relay plugin lets 127.0.0.0/8 relay,
# plugins/signature.js adds the same static signature and header as altermime,
# and queue/smtp_forward hands each message to the sink over STARTTLS with the
# tenant's client certificate before Haraka answers 250 (no queue of its own).
hk=$work/haraka
haraka=$work/haraka-node/node_modules/.bin/haraka
installed=$(node -p "require('$work/haraka-node/node_modules/Haraka/package.json').version" 2>/dev/null || true)
if ! [ -x "$haraka" ] || [ "$installed" != "$haraka_version" ]; then
  mkdir -p "$work/haraka-node"
  [ -f "$work/haraka-node/package.json" ] || echo '{"private": true}' > "$work/haraka-node/package.json"
  npm install --prefix "$work/haraka-node" --save-exact --no-audit --no-fund --loglevel=error "Haraka@$haraka_version" >/dev/null
fi
"$haraka" -i "$hk" >/dev/null  # Haraka's own skeleton (connection.ini etc.), then ours over it
cp -r bench/haraka/. "$hk/"
cp certs/relay.pem certs/relay.key certs/S5HG3DCG14.pem certs/S5HG3DCG14.key "$hk/config/"
# Without dhparams.pem Haraka forks `openssl dhparam 2048`, which burns a core
# during the run and outlives Haraka; the RFC 7919 group needs no generating.
openssl genpkey -genparam -algorithm DH -pkeyopt group:ffdhe2048 -out "$hk/config/dhparams.pem"
cp "$pf/disclaimer.txt" "$hk/config/signature.txt"
cp "$pf/disclaimer.html" "$hk/config/signature.html"
start_sink "$work/haraka-received"
# NODE_EXTRA_CA_CERTS lets smtp_forward verify the sink's certificate.
NODE_EXTRA_CA_CERTS=$root/certs/ca.pem "$haraka" -c "$hk" > "$hk/haraka.log" 2>&1 &
haraka_pid=$!
wait_port $haraka_port || { echo "haraka did not start (see $hk/haraka.log)"; kill -TERM $haraka_pid $sink_pid; exit 1; }
run "haraka $haraka_version + smtp_forward" $haraka_port "$work/haraka-received"
kill -TERM $haraka_pid; wait $haraka_pid || true
kill -TERM $sink_pid; wait $sink_pid || true
