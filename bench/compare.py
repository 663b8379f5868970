#!/usr/bin/env python3
"""sigrelay beside what mail administrators run today, on loopback, one table.

Every system relays to the same smarthost-sink over STARTTLS with the
tenant's client certificate, and is fed by smtp-blaster over STARTTLS:

  ceiling            blaster -> sink (what the machine can do at all)
  sigrelay           blaster -> sigrelay -> sink, every message signed
  postfix-tls        blaster -> Postfix (smtpd TLS, queue in tmpfs) -> sink
  postfix-altermime  the same with the classic altermime content filter
  haraka             blaster -> Haraka + smtp_forward -> sink (--with-haraka:
                     Haraka is not a Debian package; it comes from npm)

Per row: msg/s end to end (first message sent until the last one is at the
sink: Postfix answers 250 once its queue has the message, sigrelay only once
the smart host has it), MB/s of message bytes, the client's p50/p99 latency
to 250, and the CPU time of the system under test per message (the whole
process tree: Postfix's master and every child it reaped, Haraka's workers;
for the ceiling, the sink's). "x CPU" is that CPU per message over
sigrelay's in the same size.

--quick (CI): every system with a few hundred messages; each system x size is
one case that passes when every message got 250 and arrived. Timings are
printed, never checked.

--repeat N runs every system N times at each size, in turns (ceiling,
sigrelay, Postfix, ..., then again), and keeps each system's run with the
median msg/s: on a shared machine one run can be a third off.

usage: compare.py --build DIR [--certs DIR] [--examples DIR] [--quick] [--with-haraka] [--sizes 2048,20480,204800,mix]
                  [--messages N] [--connections N] [--repeat N] [--json FILE]"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SINK_PORT = 2526      # examples/tenants.json: fabrikam's smart host
RELAY_PORT = 2599
POSTFIX_TLS_PORT = 2537
POSTFIX_FILTER_PORT = 2538
HARAKA_PORT = 2528    # bench/haraka/config/smtp.ini
HARAKA_VERSION = "3.3.4"
TICK = os.sysconf("SC_CLK_TCK")
SENDER = "jane.doe@fabrikam.com"
# Outlook-shaped traffic from the project's MIME fixtures.
MIX = ["alternative/outlook.eml", "alternative/related-inside-alternative.eml",
       "reply/outlook-desktop.eml", "reply/outlook-2010.eml", "reply/owa.eml",
       "reply/outlook-mobile-divrplyfwdmsg.eml", "related/html-inline-image.eml",
       "mixed/alternative-and-pdf.eml", "mixed/text-attachment.eml", "html/html-only-qp.eml",
       "plain/utf-8-qp.eml", "marker/html-thread-with-marker.eml"]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def wait_port(port, seconds=15):
    end = time.time() + seconds
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def port_in_use(port):
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
        return True
    except OSError:
        return False


def tree_ticks(root_pid):
    """utime+stime+cutime+cstime summed over root_pid and its live descendants:
    children that exited are in their reaping parent's cutime, so the sum taken
    before and after a run differs by exactly the tree's CPU in between."""
    children, ticks = {}, {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(d)
        children.setdefault(int(fields[1]), []).append(pid)
        ticks[pid] = sum(int(x) for x in fields[11:15])
    total, todo = 0, [root_pid]
    while todo:
        p = todo.pop()
        total += ticks.get(p, 0)
        todo += children.get(p, [])
    return total / TICK


def count_files(d):
    try:
        return sum(1 for e in os.scandir(d) if e.name.endswith(".eml"))
    except FileNotFoundError:
        return 0


class Bench:
    def __init__(self, a):
        self.a = a
        self.build = os.path.abspath(a.build)
        self.sink_bin = os.path.join(self.build, "tools/smarthost-sink/smarthost-sink")
        self.blaster = os.path.join(self.build, "tools/smtp-blaster/smtp-blaster")
        self.relay = os.path.join(self.build, "sigrelay")
        self.certs = os.path.abspath(a.certs)
        self.examples = os.path.abspath(a.examples)
        self.work = os.path.join(ROOT, ".bench")
        self.shm = tempfile.mkdtemp(prefix="sigrelay-compare-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
        self.procs = []
        self.rows = []

    def cert(self, name):
        return os.path.join(self.certs, name)

    def spawn(self, argv, **kw):
        p = subprocess.Popen(argv, **kw)
        self.procs.append(p)
        return p

    def stop(self, p):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def cleanup(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        shutil.rmtree(self.shm, ignore_errors=True)

    # ---- the sink ------------------------------------------------------------
    def start_sink(self, save_dir):
        os.makedirs(save_dir, exist_ok=True)
        p = self.spawn([self.sink_bin, "--listen", f"127.0.0.1:{SINK_PORT}", "--quiet", "--save-dir", save_dir,
                        "--tls-cert", self.cert("smarthost.pem"), "--tls-key", self.cert("smarthost.key"),
                        "--require-client-cert", "S5HG3DCG14.smtp.contososignatureservice.com",
                        "--client-ca", self.cert("ca.pem")])
        if not wait_port(SINK_PORT):
            raise RuntimeError("smarthost-sink did not start")
        return p

    # ---- one measured run ------------------------------------------------------
    def blast(self, port, load, messages, connections, tls_name, extra=()):
        argv = [self.blaster, "--target", f"127.0.0.1:{port}", "--connections", str(connections),
                "--messages", str(messages), "--from", SENDER, "--starttls", "--ca", self.cert("ca.pem"),
                "--tls-name", tls_name, "--json"] + load + list(extra)
        out = subprocess.run(argv, capture_output=True, text=True, timeout=900)
        try:
            return json.loads(out.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            raise RuntimeError(f"smtp-blaster printed no result: {out.stderr.strip()[-300:]}")

    def measure(self, system, size_label, port, sut_pid, load, msg_bytes, messages, connections, save_dir,
                tls_name="smtp.contososignatureservice.com", extra=(), signed_marker=None):
        c0, t0 = tree_ticks(sut_pid), time.time()
        client = self.blast(port, load, messages, connections, tls_name, extra)
        accepted = client.get("accepted", 0)
        last, last_n, deadline = time.time(), count_files(save_dir), time.time() + 120
        while time.time() < deadline and last_n < accepted:
            time.sleep(0.05)
            n = count_files(save_dir)
            if n != last_n:
                last, last_n = time.time(), n
        t1 = max(last, t0 + client.get("seconds", 0))
        cpu = tree_ticks(sut_pid) - c0
        arrived = count_files(save_dir)
        signed = None
        if signed_marker is not None:
            signed = 0
            for e in os.scandir(save_dir):
                with open(e.path, "rb") as f:
                    signed += signed_marker in f.read()
        secs = max(t1 - t0, 1e-9)
        row = {"system": system, "size": size_label, "messages": messages, "accepted": accepted,
               "arrived": arrived, "signed": signed, "seconds": round(secs, 3),
               "messages_per_second": round(arrived / secs, 1),
               "mb_per_second": round(arrived * msg_bytes / secs / 1e6, 2),
               "p50_ms": client["latency_ms"]["p50"], "p99_ms": client["latency_ms"]["p99"],
               "cpu_ms_per_message": round(cpu * 1000 / max(arrived, 1), 4), "replies": client.get("replies")}
        self.rows.append(row)
        log(json.dumps(row))
        return row

    # ---- loads ----------------------------------------------------------------
    def loads(self):
        out = []
        for s in self.a.sizes.split(","):
            if s == "mix":
                d = self.mix_corpus()
                files = [os.path.join(d, f) for f in os.listdir(d)]
                avg = sum(os.path.getsize(f) for f in files) // len(files)
                out.append(("mix", ["--corpus", d], avg))
            else:
                out.append((human(int(s)), ["--size", s], int(s)))
        return out

    def mix_corpus(self):
        d = os.path.join(self.shm, "mix")
        if not os.path.isdir(d):
            src = os.path.join(self.shm, "fixtures")
            subprocess.run([sys.executable, os.path.join(ROOT, "tests/fixtures/make_fixtures.py"), src,
                            "--certs", self.certs], check=True, stdout=subprocess.DEVNULL)
            os.makedirs(d)
            for m in MIX:
                shutil.copy(os.path.join(src, m), os.path.join(d, m.replace("/", "-")))
        return d

    # ---- the systems ------------------------------------------------------------
    def run_ceiling(self, label, load, nbytes, n, c, extra=()):
        save = os.path.join(self.shm, f"ceiling-{label}")
        sink = self.start_sink(save)
        try:
            return self.measure("ceiling (blaster -> sink)", label, SINK_PORT, sink.pid, load, nbytes, n, c, save,
                                tls_name="fabrikam.mail.protection.outlook.com",
                                extra=["--client-cert", self.cert("S5HG3DCG14.pem"),
                                       "--client-key", self.cert("S5HG3DCG14.key")] + list(extra))
        finally:
            self.stop(sink)
            shutil.rmtree(save, ignore_errors=True)

    def run_sigrelay(self, label, load, nbytes, n, c, extra=()):
        save = os.path.join(self.shm, f"sigrelay-{label}")
        sink = self.start_sink(save)
        relay = self.spawn([self.relay, "--listen", f"127.0.0.1:{RELAY_PORT}",
                            "--tenants", os.path.join(self.examples, "tenants.json"),
                            "--tls-cert", self.cert("relay.pem"), "--tls-key", self.cert("relay.key"), "--quiet"],
                           cwd=self.examples)
        try:
            if not wait_port(RELAY_PORT):
                raise RuntimeError("sigrelay did not start")
            return self.measure("sigrelay", label, RELAY_PORT, relay.pid, load, nbytes, n, c, save,
                                extra=extra, signed_marker=b"Jane Doe")
        finally:
            self.stop(relay)
            self.stop(sink)
            shutil.rmtree(save, ignore_errors=True)

    def run_postfix(self, label, load, nbytes, n, c, port, name):
        save = os.path.join(self.shm, f"postfix-{label}")
        sink = self.start_sink(save)
        try:
            master = self.postfix_start()
            return self.measure(name, label, port, master, load, nbytes, n, c, save,
                                signed_marker=b"Jane Doe" if port == POSTFIX_FILTER_PORT else None)
        finally:
            self.postfix_stop()
            self.stop(sink)
            shutil.rmtree(save, ignore_errors=True)

    def run_haraka(self, label, load, nbytes, n, c):
        save = os.path.join(self.shm, f"haraka-{label}")
        sink = self.start_sink(save)
        hk = self.haraka_dir()
        env = dict(os.environ, NODE_EXTRA_CA_CERTS=self.cert("ca.pem"))
        with open(os.path.join(hk, "haraka.log"), "ab") as logf:
            p = self.spawn([self.haraka_bin, "-c", hk], env=env, stdout=logf, stderr=logf)
        try:
            if not wait_port(HARAKA_PORT, 30):
                raise RuntimeError(f"Haraka did not start (see {hk}/haraka.log)")
            return self.measure(f"haraka {HARAKA_VERSION}", label, HARAKA_PORT, p.pid, load, nbytes, n, c, save,
                                signed_marker=b"Jane Doe")
        finally:
            self.stop(p)
            self.stop(sink)
            shutil.rmtree(save, ignore_errors=True)

    # ---- Postfix: a private instance, queue in tmpfs ----------------------------
    def postfix_setup(self):
        pf = self.pf = os.path.join(self.shm, "postfix")
        os.makedirs(os.path.join(pf, "etc"))
        os.makedirs(os.path.join(pf, "filter"))
        os.makedirs(os.path.join(pf, "spool"))
        os.chmod(self.shm, 0o755)  # the filter runs as nobody
        os.chmod(os.path.join(pf, "filter"), 0o1777)
        for kind in ("txt", "html"):
            with open(os.path.join(self.examples, f"fabrikam/default.{kind}")) as f:
                with open(os.path.join(pf, f"disclaimer.{kind}"), "w") as g:
                    g.write(render_static(f.read()))
        filt = os.path.join(pf, "filter.sh")
        with open(filt, "w") as f:
            f.write(f"""#!/bin/sh
# altermime content filter: the classic Postfix "simple filter" recipe.
cd {pf}/filter || exit 75
trap 'rm -f in.$$' 0 1 2 3 15
cat > in.$$ || exit 75
/usr/bin/altermime --input=in.$$ --disclaimer={pf}/disclaimer.txt --disclaimer-html={pf}/disclaimer.html \\
  --xheader="SignatureContoso: true" >/dev/null || exit 75
/usr/sbin/sendmail -C {pf}/etc -G -i "$@" < in.$$
exit $?
""")
        os.chmod(filt, 0o755)
        c = self.cert
        with open(os.path.join(pf, "etc/main.cf"), "w") as f:
            f.write(f"""compatibility_level = 3.6
queue_directory = {pf}/spool
data_directory = {pf}/data
myhostname = postfix.bench.localhost
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:{SINK_PORT}
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_tls_cert_file = {c('relay.pem')}
smtpd_tls_key_file = {c('relay.key')}
smtpd_tls_security_level = may
smtp_tls_security_level = encrypt
smtp_tls_cert_file = {c('S5HG3DCG14.pem')}
smtp_tls_key_file = {c('S5HG3DCG14.key')}
smtp_tls_CAfile = {c('ca.pem')}
smtp_connection_cache_on_demand = yes
default_process_limit = 200
maillog_file = {pf}/maillog
maillog_file_prefixes = {self.shm}
alias_maps =
alias_database =
""")
        with open("/etc/postfix/master.cf") as f:
            master = f.read()
        master = master.replace("\nsmtp      inet", "\n#smtp      inet")
        master = "\n".join("postlog   unix-dgram n  -       n       -       1       postlogd" if l.startswith("postlog ")
                           else l for l in master.splitlines())
        master += (f"\n127.0.0.1:{POSTFIX_TLS_PORT} inet n - n - - smtpd\n"
                   f"127.0.0.1:{POSTFIX_FILTER_PORT} inet n - n - - smtpd -o content_filter=altermime:dummy\n"
                   f"altermime unix - n n - 50 pipe flags=Rq user=nobody null_sender= "
                   f"argv={filt} -f ${{sender}} -- ${{recipient}}\n")
        with open(os.path.join(pf, "etc/master.cf"), "w") as f:
            f.write(master)
        # Postfix honours another config directory only when the default
        # main.cf names it (a safety rule for set-gid programs like postdrop).
        open("/etc/postfix/main.cf", "a").close()
        subprocess.run(["postconf", "-e", f"alternate_config_directories = {pf}/etc"], check=True)
        subprocess.run(["postfix", "-c", f"{pf}/etc", "check"], check=True)

    def postfix_start(self):
        subprocess.run(["postfix", "-c", f"{self.pf}/etc", "start"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_port(POSTFIX_TLS_PORT) or not wait_port(POSTFIX_FILTER_PORT):
            raise RuntimeError(f"postfix did not start (see {self.pf}/maillog)")
        with open(f"{self.pf}/spool/pid/master.pid") as f:
            return int(f.read().strip())

    def postfix_stop(self):
        subprocess.run(["postfix", "-c", f"{self.pf}/etc", "stop"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        for _ in range(100):
            if not port_in_use(POSTFIX_TLS_PORT):
                break
            time.sleep(0.1)

    # ---- Haraka, from npm (opt-in) -------------------------------------------------
    def haraka_dir(self):
        node = os.path.join(self.work, "haraka-node")
        self.haraka_bin = os.path.join(node, "node_modules/.bin/haraka")
        pkg = os.path.join(node, "node_modules/Haraka/package.json")
        have = json.load(open(pkg))["version"] if os.path.exists(pkg) else None
        if have != HARAKA_VERSION:
            os.makedirs(node, exist_ok=True)
            if not os.path.exists(os.path.join(node, "package.json")):
                with open(os.path.join(node, "package.json"), "w") as f:
                    f.write('{"private": true}\n')
            subprocess.run(["npm", "install", "--prefix", node, "--save-exact", "--no-audit", "--no-fund",
                            "--loglevel=error", f"Haraka@{HARAKA_VERSION}"], check=True, stdout=subprocess.DEVNULL)
        hk = os.path.join(self.shm, "haraka")
        if not os.path.isdir(hk):
            subprocess.run([self.haraka_bin, "-i", hk], check=True, stdout=subprocess.DEVNULL)
            shutil.copytree(os.path.join(ROOT, "bench/haraka"), hk, dirs_exist_ok=True)
            for f in ("relay.pem", "relay.key", "S5HG3DCG14.pem", "S5HG3DCG14.key"):
                shutil.copy(self.cert(f), os.path.join(hk, "config", f))
            # Without it Haraka forks `openssl dhparam 2048` during the run.
            subprocess.run(["openssl", "genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt", "group:ffdhe2048",
                            "-out", os.path.join(hk, "config/dhparams.pem")], check=True, capture_output=True)
            shutil.copy(os.path.join(self.pf, "disclaimer.txt"), os.path.join(hk, "config/signature.txt"))
            shutil.copy(os.path.join(self.pf, "disclaimer.html"), os.path.join(hk, "config/signature.html"))
        return hk


def render_static(t):
    """Jane Doe's signature rendered by hand: altermime and the Haraka plugin
    add one static text to every message; sigrelay renders each sender's."""
    values = {"display_name": "Jane Doe", "title": "Chief Executive Officer", "department": "Management",
              "phone": "+1 425 555 0100", "mobile": "+1 425 555 0101", "email": SENDER}
    t = re.sub(r"(?m)^\{\{[#^/][a-z_]*\}\}\n", "", t)
    t = re.sub(r"\{\{([a-z_]+)\}\}", lambda m: values.get(m.group(1), ""), t)
    return re.sub(r"\{\{[^}]*\}\}", "", t)


def human(n):
    return f"{n // 1024} KiB" if n % 1024 == 0 else f"{n} B"


def table(rows):
    base = {r["size"]: r for r in rows if r["system"] == "sigrelay"}
    head = ("| size | system | msg/s | MB/s | p50 ms | p99 ms | CPU ms/msg | x sigrelay CPU | "
            "x sigrelay msg/s | delivered |")
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        b = base.get(r["size"])
        xc = f"{r['cpu_ms_per_message'] / b['cpu_ms_per_message']:.1f}" if b and b["cpu_ms_per_message"] else "-"
        xm = f"{r['messages_per_second'] / b['messages_per_second']:.2f}" if b and b["messages_per_second"] else "-"
        lines.append(f"| {r['size']} | {r['system']} | {r['messages_per_second']:,.0f} | {r['mb_per_second']:.1f} | "
                     f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['cpu_ms_per_message']:.3f} | {xc} | {xm} | "
                     f"{r['arrived']}/{r['messages']} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", required=True)
    ap.add_argument("--certs", default=os.path.join(ROOT, "certs"), help="scripts/gen-certs.sh's output")
    ap.add_argument("--examples", default=os.path.join(ROOT, "examples"),
                    help="examples/ as a folder whose ../certs holds --certs' files")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--with-haraka", action="store_true")
    ap.add_argument("--sizes")
    ap.add_argument("--messages", type=int)
    ap.add_argument("--connections", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--json")
    a = ap.parse_args()
    a.sizes = a.sizes or ("20480,mix" if a.quick else "2048,20480,204800,mix")
    b = Bench(a)
    for port in (SINK_PORT, RELAY_PORT, POSTFIX_TLS_PORT, POSTFIX_FILTER_PORT):
        if port_in_use(port):
            print(f"compare: port {port} is in use")
            print("0 passed, 1 failed")
            return 1
    passed = failed = 0
    postfix_ok = shutil.which("postfix") and shutil.which("altermime") and os.geteuid() == 0
    try:
        if postfix_ok:
            b.postfix_setup()
        else:
            log("compare: Postfix rows need root and the postfix and altermime packages (scripts/setup.sh)")
        for label, load, nbytes in b.loads():
            big = nbytes > 100_000
            n = a.messages or (300 if a.quick else (3000 if big else 20000))
            c = a.connections or (10 if a.quick else 50)
            pn = a.messages or (300 if a.quick else (2000 if big else 5000))
            runs = [("ceiling", lambda: b.run_ceiling(label, load, nbytes, n, c)),
                    ("sigrelay", lambda: b.run_sigrelay(label, load, nbytes, n, c))]
            if postfix_ok:
                runs += [("postfix-tls", lambda: b.run_postfix(label, load, nbytes, pn, c, POSTFIX_TLS_PORT,
                                                               "postfix 3.7, TLS both legs")),
                         ("postfix-altermime", lambda: b.run_postfix(label, load, nbytes, pn, c, POSTFIX_FILTER_PORT,
                                                                     "postfix 3.7 + altermime"))]
            else:
                failed += 2
            if a.with_haraka:
                runs.append(("haraka", lambda: b.run_haraka(label, load, nbytes, pn, c)))
            for turn in range(max(1, a.repeat)):
                for name, run in runs:
                    try:
                        r = run()
                        good = r["accepted"] == r["messages"] and r["arrived"] == r["messages"]
                        if r["signed"] is not None:
                            good = good and r["signed"] == r["arrived"]
                    except Exception as e:  # one system failing must not hide the others' rows
                        log(f"compare: {name} {label}: {e}")
                        good = False
                    print(f"{'ok' if good else 'FAILED'}: {name} at {label} delivers every message", flush=True)
                    passed += good
                    failed += not good
            keep_medians(b.rows)
        if not a.quick:
            half_rate(b)
            large(b)
    finally:
        b.cleanup()
    print()
    print(table(b.rows))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(b.rows, f, indent=1)
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


def keep_medians(rows):
    """Of several runs of one system at one size, the run with the median msg/s."""
    groups = {}
    for r in rows:
        groups.setdefault((r["system"], r["size"]), []).append(r)
    kept = []
    for r in rows:
        g = groups[(r["system"], r["size"])]
        median = sorted(g, key=lambda x: x["messages_per_second"])[(len(g) - 1) // 2]
        if r is median:
            kept.append(r)
    rows[:] = kept


def half_rate(b):
    """Open-loop latency: ceiling and sigrelay at half of sigrelay's peak at
    20 KiB; the relay's added p99 is its p99 minus the ceiling's."""
    peak = next((r for r in b.rows if r["system"] == "sigrelay" and r["size"] == "20 KiB"), None)
    if not peak:
        return
    rate = int(peak["messages_per_second"] / 2)
    n = rate * 10
    load = ["--size", "20480"]
    ce = b.run_ceiling("20 KiB @ half rate", load, 20480, n, 50, extra=["--rate", str(rate)])
    sr = b.run_sigrelay("20 KiB @ half rate", load, 20480, n, 50, extra=["--rate", str(rate)])
    log(f"compare: at {rate}/s the relay adds p99 {sr['p99_ms'] - ce['p99_ms']:.2f} ms "
        f"(p50 {sr['p50_ms'] - ce['p50_ms']:.2f} ms)")


def large(b):
    """16 messages with a 64 MiB attachment at once, BDAT on both legs."""
    path = os.path.join(b.shm, "large", "attach-64MiB.eml")
    os.makedirs(os.path.dirname(path))
    subprocess.run(["bash", "-c", f'''
b==_bench_large
{{ printf 'From: Jane Doe <{SENDER}>\\r\\nTo: Bob <bob@example.net>\\r\\nSubject: large\\r\\nMIME-Version: 1.0\\r\\n'
  printf 'Content-Type: multipart/mixed; boundary="%s"\\r\\n\\r\\n--%s\\r\\n' "$b" "$b"
  printf 'Content-Type: text/plain; charset=us-ascii\\r\\n\\r\\nHello Bob, the data is attached.\\r\\n\\r\\n--%s\\r\\n' "$b"
  printf 'Content-Type: application/octet-stream\\r\\nContent-Transfer-Encoding: base64\\r\\n\\r\\n'
  head -c 67108864 /dev/urandom | base64 -w 76 | sed 's/$/\\r/'
  printf -- '--%s--\\r\\n' "$b"; }} > "{path}"'''], check=True)
    nbytes = os.path.getsize(path)
    load = ["--corpus", os.path.dirname(path), "--chunking"]
    b.run_ceiling("64 MiB attachment, BDAT", load, nbytes, 16, 16)
    b.run_sigrelay("64 MiB attachment, BDAT", load, nbytes, 16, 16)


if __name__ == "__main__":
    sys.exit(main())
