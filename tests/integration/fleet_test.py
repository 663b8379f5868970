"""A fleet: two sigrelay instances behind Debian's HAProxy in TCP mode, as
docs/operations.md (Scaling out) recommends: PROXY protocol v2 to relays
started with --proxy-protocol --proxy-trusted 127.0.0.1/32, health checks on
each relay's /healthz, the real smarthost-sink as the tenant's smart host.

One relay is killed with SIGKILL while smtp-blaster sends through HAProxy
over STARTTLS: every message the blaster got a 250 for is at the sink exactly
once (matched by the X-Blaster-Id: header of --message-log), every other one
got a 4yz or a lost connection, never a 5yz, and HAProxy sends the rest, and
everything after, to the survivor. A draining relay (SIGTERM) is taken out the
same way while it finishes its transaction, and the relays see the client's
address from the PROXY header, never HAProxy's.

usage: fleet_test.py SIGRELAY SINK BLASTER CERTS_DIR EXAMPLES_DIR HAPROXY [case ...]"""
import collections
import glob
import json
import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import string
import subprocess
import sys
import tempfile
import time

import harness
from harness import Process, case, free_port

with harness.helpers_only():
    import relay_test as rt  # tenants_file, start_sink, http_get, metric_sum, text_message: same argv

from relay_test import BLASTER, RELAY, RELAY_NAME, cert

HAPROXY = os.path.abspath(sys.argv[6])

# Short check intervals so that a dead relay is noticed within a second; the
# client/server timeouts are the long ones a real deployment needs (DATA of
# large messages, a slow smart host), which this test never reaches.
HAPROXY_CFG = string.Template("""\
global
    maxconn 512
    log stderr format raw local0 notice
    stats socket $dir/haproxy.sock mode 600 level user

defaults
    mode tcp
    log global
    timeout connect 1s
    timeout client 11m
    timeout server 11m
    timeout check 1s
    retries 3
    option redispatch

frontend smtp
    bind 127.0.0.1:$port
    default_backend relays

backend relays
    balance roundrobin
    option httpchk GET /healthz
    http-check expect status 200
    default-server send-proxy-v2 inter 200ms fastinter 100ms downinter 200ms fall 2 rise 2
$servers
""")

RECEIVED = re.compile(rb"^Received: from \S+ \((?:\S+ )?\[([^\]]*)\]\)\r\n\tby (\S+) \(sigrelay\)")
BLASTER_ID = re.compile(rb"\r\nX-Blaster-Id: (\S+)\r\n")


class Fleet:
    """The sink, relays a and b, and HAProxy in front of them; torn down on exit."""

    def __init__(self, *relay_extra, sink_extra=()):
        assert os.access(HAPROXY, os.X_OK), f"{HAPROXY} is missing (scripts/setup.sh: package haproxy)"
        self.dir = tempfile.mkdtemp(prefix="sigrelay-fleet-")
        self.save = os.path.join(self.dir, "saved")
        self.sink_port = free_port()
        self.tenants = rt.tenants_file(self.dir, self.sink_port)
        self.procs = []
        try:
            self.sink = rt.start_sink(self.sink_port, self.save, *sink_extra)
            self.procs.append(self.sink)
            self.relays = {}
            for name in ("a", "b"):
                port, mport = free_port(), free_port()
                proc = Process([RELAY, "--listen", f"127.0.0.1:{port}", "--threads", "1",
                                "--tenants", self.tenants, "--tls-cert", cert("relay.pem"),
                                "--tls-key", cert("relay.key"), "--hostname", f"relay-{name}.test",
                                "--metrics-listen", f"127.0.0.1:{mport}",
                                "--proxy-protocol", "--proxy-trusted", "127.0.0.1/32"] + list(relay_extra),
                               port=port, banner=False)
                self.procs.append(proc)
                self.relays[name] = {"proc": proc, "port": port, "metrics": mport}
                assert rt.http_get(mport, "/healthz") == (200, "ok\n")
            self.port = free_port()
            servers = "\n".join(f"    server {n} 127.0.0.1:{r['port']} check port {r['metrics']}"
                                for n, r in self.relays.items())
            self.cfg = os.path.join(self.dir, "haproxy.cfg")
            with open(self.cfg, "w") as f:
                f.write(HAPROXY_CFG.substitute(dir=self.dir, port=self.port, servers=servers))
            # -db: foreground, no daemon; nothing in the config needs privileges.
            self.haproxy = Process([HAPROXY, "-db", "-f", self.cfg], port=self.port, banner=False)
            self.procs.append(self.haproxy)
            for name in self.relays:
                self.wait_status(name, "UP")
        except Exception:
            self.close()
            raise

    def close(self):
        for p in reversed(self.procs):
            p.__exit__(None, None, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        if exc[0] is None:
            shutil.rmtree(self.dir, ignore_errors=True)

    def stat(self):
        """HAProxy's `show stat` rows of the backend's servers, by name."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(os.path.join(self.dir, "haproxy.sock"))
            s.sendall(b"show stat\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        lines = data.decode().splitlines()
        header = lines[0].lstrip("# ").split(",")
        rows = [dict(zip(header, line.split(","))) for line in lines[1:] if line]
        return {r["svname"]: r for r in rows if r["pxname"] == "relays" and r["svname"] != "BACKEND"}

    def wait_status(self, name, status, timeout=15):
        deadline = time.monotonic() + timeout
        while True:
            row = self.stat()[name]
            if row["status"] == status:
                return row
            if time.monotonic() > deadline:
                raise AssertionError(f"HAProxy: server {name} is {row['status']} ({row['check_status']}), "
                                     f"not {status}:\n{self.haproxy.stderr()}")
            time.sleep(0.05)

    def relayed(self, name):
        status, text = rt.http_get(self.relays[name]["metrics"], "/metrics")
        assert status == 200, status
        return int(rt.metric_sum(text, "sigrelay_relayed_total"))

    def saved(self):
        """(client address, relay, blaster id or None) of every message at the sink."""
        out = []
        for path in sorted(glob.glob(os.path.join(self.save, "*.eml"))):
            with open(path, "rb") as f:
                head = f.read().split(b"\r\n\r\n", 1)[0] + b"\r\n"
            m = RECEIVED.match(head)
            assert m, f"{path}: no Received: of ours on top: {head[:300]!r}"
            i = BLASTER_ID.search(head)
            out.append((m.group(1).decode(), m.group(2).decode(), i.group(1).decode() if i else None))
        return out

    def blaster(self, log, *extra):
        return [BLASTER, "--target", f"127.0.0.1:{self.port}", "--from", "jane.doe@fabrikam.com",
                "--starttls", "--ca", cert("ca.pem"), "--tls-name", RELAY_NAME, "--json",
                "--message-log", log] + list(extra)


def read_message_log(path):
    outcomes = {}
    with open(path) as f:
        for line in f:
            mid, code = line.split()
            assert mid not in outcomes, f"{mid} twice in the blaster's log"
            outcomes[mid] = int(code)
    return outcomes


def wait_until(fn, what, timeout=30):
    deadline = time.monotonic() + timeout
    while not fn():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@case
def a_relay_killed_mid_run_loses_no_acknowledged_message():
    # The sink takes 200 ms over each message, so that about half of the 40
    # connections have a message in flight through relay a when it dies.
    with Fleet("--quiet", sink_extra=("--delay-ms", "200")) as f:
        log = os.path.join(f.dir, "run1.log")
        blaster = subprocess.Popen(f.blaster(log, "--connections", "40", "--messages", "1000", "--rate", "150",
                                             "--new-connection-every", "5", "--size", "2000"),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_until(lambda: f.relayed("a") >= 50 or blaster.poll() is not None, "relay a to relay 50 messages")
            assert blaster.poll() is None, "the blaster finished before the kill"
            f.relays["a"]["proc"].proc.send_signal(signal.SIGKILL)
            f.relays["a"]["proc"].proc.wait(timeout=10)
            b_at_kill = f.relayed("b")
            row = f.wait_status("a", "DOWN")
            assert row["check_status"].startswith("L4"), row["check_status"]  # connection refused, not a 503
            assert blaster.poll() is None, "the blaster finished before HAProxy noticed"
            out, err = blaster.communicate(timeout=90)
        finally:
            if blaster.poll() is None:
                blaster.kill()
                blaster.wait()
        summary = json.loads(out)
        outcomes = read_message_log(log)

        # sent = accepted + temporary failures, and no 5yz ever.
        assert len(outcomes) == summary["messages"], (len(outcomes), summary, err)
        by_code = collections.Counter(outcomes.values())
        accepted = {m for m, c in outcomes.items() if c == 250}
        temporary = {m for m, c in outcomes.items() if c == 0 or 400 <= c < 500}
        assert len(accepted) == summary["accepted"], (by_code, summary)
        assert len(accepted) + len(temporary) == len(outcomes), f"not 250, 4yz or lost: {by_code}"
        assert temporary, f"the kill hit no message in flight: {by_code}"
        assert summary["replies"] == {str(c): n for c, n in by_code.items()}, (summary, by_code)

        # Every 250 is at the sink exactly once; anything else at most once
        # (the sink may have taken it just before the relay died: the client
        # retries it, a duplicate rather than a loss).
        wait_until(lambda: len(f.saved()) >= len(accepted), "the accepted messages at the sink", timeout=10)
        saved = f.saved()
        at_sink = collections.Counter(mid for _, _, mid in saved)
        assert None not in at_sink, "a message without an X-Blaster-Id"
        missing = [m for m in accepted if at_sink[m] != 1]
        assert not missing, f"{len(missing)} accepted messages not at the sink exactly once: {missing[:5]}"
        assert set(at_sink) <= set(outcomes), "the sink holds a message the blaster never sent"
        assert max(at_sink.values()) == 1, at_sink.most_common(3)

        # After the kill the survivor carried the rest, and its counter agrees with the sink.
        via = collections.Counter(relay for _, relay, _ in saved)
        b_end = f.relayed("b")
        assert b_end == via["relay-b.test"], (b_end, via)
        assert b_end - b_at_kill >= 100, (b_at_kill, b_end, by_code)
        assert via["relay-a.test"] >= 50, via

        # A fresh run after HAProxy marked a DOWN: no connection goes to a.
        before = f.stat()
        log2 = os.path.join(f.dir, "run2.log")
        r = subprocess.run(f.blaster(log2, "--connections", "10", "--messages", "200", "--size", "2000"),
                           capture_output=True, text=True, timeout=60)
        summary2 = json.loads(r.stdout)
        outcomes2 = read_message_log(log2)
        assert r.returncode == 0 and summary2["accepted"] == 200, (summary2, r.stderr)
        assert set(outcomes2.values()) == {250} and len(outcomes2) == 200
        after = f.stat()
        assert after["a"]["status"] == "DOWN" and after["b"]["status"] == "UP", after
        assert int(after["a"]["stot"]) == int(before["a"]["stot"]), "HAProxy sent a connection to the dead relay"
        assert int(after["b"]["stot"]) - int(before["b"]["stot"]) >= 10, (before["b"]["stot"], after["b"]["stot"])
        assert f.relayed("b") == b_end + 200
        wait_until(lambda: len(f.saved()) >= len(saved) + 200, "the second run at the sink", timeout=10)
        run2 = [(relay, mid) for _, relay, mid in f.saved() if mid in outcomes2]
        assert len(run2) == 200 and {relay for relay, _ in run2} == {"relay-b.test"}, \
            collections.Counter(relay for relay, _ in run2)
        assert len({mid for _, mid in run2}) == 200
        print(f"     killed a: {dict(by_code)} of {len(outcomes)} sent; via {dict(via)}", flush=True)


def send_through(port, source_ip, subject):
    """One message over STARTTLS from `source_ip`; returns the relay's name from its greeting."""
    c = smtplib.SMTP(local_hostname="exo.test", timeout=20, source_address=(source_ip, 0))
    try:
        code, banner = c.connect("127.0.0.1", port)
        assert code == 220, (code, banner)
        c._host = RELAY_NAME  # smtplib sends _host as SNI / verify name
        c.starttls(context=ssl.create_default_context(cafile=cert("ca.pem")))
        c.ehlo("exo.test")
        c.send_message(rt.text_message(subject=subject))
        c.quit()
    finally:
        c.close()
    return banner.split()[0].decode()


@case
def the_relays_see_the_client_address_not_the_balancers():
    with Fleet() as f:
        # Two connections from 127.0.0.5 through HAProxy: round robin gives
        # one to each relay; both name 127.0.0.5, which only the PROXY header
        # can tell them (HAProxy reaches them from 127.0.0.1).
        greeted = {send_through(f.port, "127.0.0.5", f"via the balancer {i}") for i in range(2)}
        assert greeted == {"relay-a.test", "relay-b.test"}, greeted
        wait_until(lambda: len(f.saved()) >= 2, "two messages at the sink", timeout=10)
        saved = f.saved()
        assert sorted((ip, relay) for ip, relay, _ in saved) == \
            [("127.0.0.5", "relay-a.test"), ("127.0.0.5", "relay-b.test")], saved
        for name, r in f.relays.items():
            lines = [line for line in r["proc"].stderr().splitlines() if "queue=" in line]
            assert len(lines) == 1 and " 127.0.0.5:" in lines[0], (name, lines)

        # Straight to a relay, without the balancer: no PROXY header from the
        # trusted address is dropped unanswered ...
        a = f.relays["a"]
        raw = socket.create_connection(("127.0.0.1", a["port"]), timeout=20)
        raw.sendall(b"EHLO direct.test\r\n")
        try:
            assert raw.recv(512) == b"", "a connection without a PROXY header was answered"
        except ConnectionResetError:
            pass
        raw.close()
        # ... and any other address is refused before its header is read.
        raw = rt.connect_from("127.0.0.9", a["port"])
        raw.sendall(b"PROXY TCP4 40.107.1.1 127.0.0.1 40000 25\r\n")
        reply = b""
        try:
            while chunk := raw.recv(4096):
                reply += chunk
        except ConnectionResetError:
            pass
        raw.close()
        assert reply.startswith(b"554 5.7.1") and b"127.0.0.9" in reply, reply
        assert len(f.saved()) == 2


@case
def a_draining_relay_leaves_the_pool_and_finishes_its_transaction():
    with Fleet("--drain-timeout", "60") as f:
        # A transaction open on relay a (the greeting names the relay).
        held = None
        for _ in range(4):
            c = smtplib.SMTP(local_hostname="exo.test", timeout=20)
            code, banner = c.connect("127.0.0.1", f.port)
            if banner.startswith(b"relay-a.test"):
                held = c
                break
            c.quit()
        assert held is not None, "round robin never chose relay a"
        held._host = RELAY_NAME
        held.starttls(context=ssl.create_default_context(cafile=cert("ca.pem")))
        held.ehlo("exo.test")
        assert held.mail("jane.doe@fabrikam.com")[0] == 250
        assert held.rcpt("bob@example.net")[0] == 250

        a = f.relays["a"]["proc"]
        a.proc.send_signal(signal.SIGTERM)
        f.wait_status("a", "DOWN")
        assert a.proc.poll() is None, "relay a did not wait for its transaction"
        # New mail meanwhile goes to b.
        assert send_through(f.port, "127.0.0.1", "while a drains") == "relay-b.test"
        code, _ = held.data(rt.text_message(subject="finished while draining").as_bytes())
        assert code == 250, code
        try:
            held.quit()
        except smtplib.SMTPServerDisconnected:
            pass
        held.close()
        assert a.stop(timeout=20) == 0
        wait_until(lambda: len(f.saved()) >= 2, "both messages at the sink", timeout=10)
        assert sorted(relay for _, relay, _ in f.saved()) == ["relay-a.test", "relay-b.test"]


if __name__ == "__main__":
    harness.run(6)
