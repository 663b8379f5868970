"""sigrelay under systemd: packaging/sigrelay.service passes `systemd-analyze
verify`, and the relay's sd_notify messages, received on a NOTIFY_SOCKET of
the test's own as systemd would: READY=1 once listening, RELOADING=1 and
READY=1 around a SIGHUP (a refused reload says why in STATUS= and keeps
serving), STOPPING=1 on SIGTERM, WATCHDOG=1 keep-alives and the STATUS= counts.

usage: systemd_test.py SIGRELAY SINK BLASTER CERTS_DIR EXAMPLES_DIR UNIT_FILE [case ...]"""
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import harness
from harness import Process, case, free_port

with harness.helpers_only():
    import relay_test as rt  # Setup, tenants_file, start_sink, cert(): same argv

from relay_test import RELAY, cert

UNIT = os.path.abspath(sys.argv[6])
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


# --- the unit file -----------------------------------------------------------

def unit_settings(text):
    """[Service] and the other sections' Key=value lines, continuations joined."""
    settings = {}
    logical = text.replace("\\\n", " ")
    for line in logical.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def unit_for_this_build(d):
    """The unit with ExecStart naming the binary under test (verify needs it to exist)."""
    with open(UNIT) as f:
        text = f.read()
    assert text.count("ExecStart=/usr/bin/sigrelay ") == 1, "ExecStart is expected to run /usr/bin/sigrelay"
    path = os.path.join(d, "sigrelay.service")
    with open(path, "w") as f:
        f.write(text.replace("ExecStart=/usr/bin/sigrelay ", f"ExecStart={RELAY} "))
    return path, unit_settings(text)


@case
def unit_file_verifies_without_a_warning():
    assert SYSTEMD_ANALYZE, "systemd-analyze is not installed (scripts/setup.sh: package systemd)"
    d = tempfile.mkdtemp(prefix="sigrelay-unit-")
    try:
        path, settings = unit_for_this_build(d)
        r = subprocess.run([SYSTEMD_ANALYZE, "verify", path], capture_output=True, text=True, timeout=60,
                           cwd=d, env=dict(os.environ, SYSTEMD_LOG_LEVEL="notice", SYSTEMD_PAGER="cat"))
        # verify exits 0 after some warnings (unknown keys, bad values): any output fails.
        assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), \
            f"systemd-analyze verify exited {r.returncode}:\n{r.stdout}{r.stderr}"
        assert settings["Type"] == ["notify"], settings["Type"]
        assert settings["SystemCallFilter"][0].split()[1:] == \
            ["io_uring_setup", "io_uring_enter", "io_uring_register"], settings["SystemCallFilter"]
        # The drain (--drain-timeout, default 30 s) ends before systemd's SIGKILL.
        stop = settings["TimeoutStopSec"][0]
        assert stop.endswith("s") and int(stop[:-1]) > 30, stop
    finally:
        shutil.rmtree(d, ignore_errors=True)


@case
def unit_execstart_flags_are_sigrelay_flags():
    with open(UNIT) as f:
        settings = unit_settings(f.read())
    argv = shlex.split(settings["ExecStart"][0])
    assert argv[0] == "/usr/bin/sigrelay", argv
    helptext = subprocess.run([RELAY, "--help"], capture_output=True, text=True, timeout=20).stdout
    flags = [a for a in argv[1:] if a.startswith("--")]
    assert flags, argv
    for flag in flags:
        assert re.search(r"(^|\s)" + re.escape(flag) + r"(?=\s)", helptext), f"sigrelay --help has no {flag}"
    assert argv[argv.index("--pid-file") + 1].startswith("/run/" + settings["RuntimeDirectory"][0] + "/")


# --- sd_notify end to end ----------------------------------------------------------

class NotifySocket:
    """An AF_UNIX datagram socket, as systemd's NOTIFY_SOCKET."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="sigrelay-notify-")
        self.path = os.path.join(self.dir, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.seen = []  # every datagram, in order

    def next(self, timeout=10.0):
        """The next datagram's text, or None after `timeout` seconds."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096).decode()
        except socket.timeout:
            return None
        self.seen.append(data)
        return data

    def event(self, timeout=10.0):
        """The next datagram that is not a periodic STATUS= alone (nor WATCHDOG=1)."""
        deadline = time.monotonic() + timeout
        while True:
            m = self.next(max(deadline - time.monotonic(), 0.001))
            if m is None:
                raise AssertionError(f"no notification within {timeout}s; seen: {self.seen}")
            if m == "WATCHDOG=1" or (m.startswith("STATUS=") and "\n" not in m):
                continue
            return m

    def close(self):
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def relay_argv(port, tenants, *extra):
    """relay_test.start_relay's command line."""
    return [RELAY, "--listen", f"127.0.0.1:{port}", "--threads", "2", "--tenants", tenants,
            "--tls-cert", cert("relay.pem"), "--tls-key", cert("relay.key"),
            "--hostname", "relay.test", "--drain-timeout", "5"] + list(extra)


class Notified(rt.Setup):
    """relay_test's Setup (a sink, a relay in front of it) with the relay
    started under NOTIFY_SOCKET (and `env`); `own_pid`: WATCHDOG_PID is the
    relay's own pid (set by a shell that then execs it)."""

    def __init__(self, env=None, own_pid=False):
        self.notify = NotifySocket()
        self.dir = tempfile.mkdtemp(prefix="sigrelay-systemd-")
        self.save = os.path.join(self.dir, "saved")
        self.sink_port, self.relay_port = free_port(), free_port()
        self.tenants = rt.tenants_file(self.dir, self.sink_port)
        full = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))}
        full["NOTIFY_SOCKET"] = self.notify.path
        full.update(env or {})
        argv = relay_argv(self.relay_port, self.tenants)
        if own_pid:
            argv = ["/bin/sh", "-c", 'WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$0" "$@"'] + argv
        self.sink = rt.start_sink(self.sink_port, self.save)
        try:
            self.relay = Process(argv, port=self.relay_port, env=full)
        except Exception:
            self.sink.kill()
            self.notify.close()
            raise

    def __exit__(self, *exc):
        try:
            self.relay.__exit__()
            self.sink.__exit__()
        finally:
            self.notify.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    def send(self):
        with self.smtp() as c:
            refused = c.send_message(rt.text_message())
        assert refused == {}, refused

    def set_processed_value(self, value):
        with open(self.tenants) as f:
            conf = json.load(f)
        conf["tenants"][0]["processed_header"]["value"] = value
        with open(self.tenants, "w") as f:
            json.dump(conf, f)

    def logs(self):
        return f"\n--- notifications ---\n{self.notify.seen}\n--- relay stderr (tail) ---\n{self.relay.stderr()[-3000:]}"


def expect_reloading(s):
    m = s.notify.event()
    head = re.fullmatch(r"RELOADING=1\nMONOTONIC_USEC=(\d+)\nSTATUS=reloading (.*)", m)
    assert head and head.group(2) == s.tenants, repr(m) + s.logs()
    # CLOCK_MONOTONIC, as Python's time.monotonic() on Linux.
    assert abs(int(head.group(1)) / 1e6 - time.monotonic()) < 10, (m, time.monotonic())


@case
def ready_reload_refused_reload_and_stopping():
    with Notified() as s:
        m = s.notify.event()
        assert m == f"READY=1\nSTATUS=listening on 127.0.0.1:{s.relay_port}, 2 shards, 1 tenant from {s.tenants}", \
            repr(m) + s.logs()
        s.send()

        # A good reload: RELOADING=1, then READY=1 once the shards use it.
        s.set_processed_value("reloaded")
        s.relay.proc.send_signal(signal.SIGHUP)
        expect_reloading(s)
        m = s.notify.event()
        assert m == f"READY=1\nSTATUS=reloaded {s.tenants}: 1 tenant", repr(m) + s.logs()
        s.send()  # READY=1 came after every shard took the new tenants: no sleep needed
        saved = s.saved(2)
        assert len(saved) == 2 and b"SignatureContoso: reloaded" in saved[1], s.logs()

        # A bad file: refused, STATUS= says why, READY=1 again, the old tenants serve.
        with open(s.tenants, "w") as f:
            f.write("{ not json")
        s.relay.proc.send_signal(signal.SIGHUP)
        expect_reloading(s)
        m = s.notify.event()
        prefix = "READY=1\nSTATUS=reload refused, serving the previous tenants: "
        assert m.startswith(prefix) and len(m) > len(prefix), repr(m) + s.logs()
        why = m[len(prefix):]
        print(f"     STATUS= of the refused reload: {why}", flush=True)
        assert f"reload refused, keeping the previous tenants: {why}\n" in s.relay.stderr(), repr(why) + s.logs()
        s.send()
        saved = s.saved(3)
        assert len(saved) == 3 and b"SignatureContoso: reloaded" in saved[2], s.logs()

        # SIGTERM: STOPPING=1 as the drain begins, then a clean exit.
        s.relay.proc.send_signal(signal.SIGTERM)
        m = s.notify.event()
        assert m == "STOPPING=1\nSTATUS=stopping: draining connections (at most 5 s)", repr(m) + s.logs()
        assert s.relay.stop() == 0, s.logs()
        assert s.notify.next(timeout=0.2) is None, s.logs()


def keepalives(s, seconds):
    """WATCHDOG=1 datagrams within `seconds`; also returns the longest gap."""
    times = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        m = s.notify.next(timeout=max(deadline - time.monotonic(), 0.001))
        if m == "WATCHDOG=1":
            times.append(time.monotonic())
    gaps = [b - a for a, b in zip(times, times[1:])]
    return len(times), max(gaps, default=float("inf"))


@case
def watchdog_keepalives_and_status_counts():
    # WATCHDOG_USEC=400000: keep-alives every 200 ms, and so are the STATUS= rounds.
    with Notified(env={"WATCHDOG_USEC": "400000"}) as s:
        assert s.notify.event().startswith("READY=1\n"), s.logs()
        count, gap = keepalives(s, 2.0)
        print(f"     WATCHDOG_PID unset: {count} keep-alives in 2 s, longest gap {gap:.2f}s", flush=True)
        assert count >= 5, f"{count} keep-alives in 2 s" + s.logs()
        s.send()
        deadline = time.monotonic() + 10
        want = re.compile(r"STATUS=\d+ connections?, 1 message relayed \(1 signed\), 0 deferred")
        while not any(want.fullmatch(m) for m in s.notify.seen):
            assert time.monotonic() < deadline, "no STATUS= with the relayed message" + s.logs()
            s.notify.next(timeout=0.5)
        assert s.relay.stop() == 0, s.logs()
    # WATCHDOG_PID naming the relay itself: kept alive too.
    with Notified(env={"WATCHDOG_USEC": "400000"}, own_pid=True) as s:
        assert s.notify.event().startswith("READY=1\n"), s.logs()
        count, gap = keepalives(s, 2.0)
        print(f"     WATCHDOG_PID = the relay: {count} keep-alives in 2 s, longest gap {gap:.2f}s", flush=True)
        assert count >= 5, f"{count} keep-alives in 2 s" + s.logs()
        assert s.relay.stop() == 0, s.logs()
    # WATCHDOG_PID naming another process (the watchdog is not the relay's): none.
    with Notified(env={"WATCHDOG_USEC": "400000", "WATCHDOG_PID": str(os.getpid())}) as s:
        assert s.notify.event().startswith("READY=1\n"), s.logs()
        count, _ = keepalives(s, 1.0)
        assert count == 0, f"{count} keep-alives for another process's watchdog" + s.logs()
        assert s.relay.stop() == 0, s.logs()


@case
def without_notify_socket_nothing_changes():
    """The same relay, not under systemd: starts, serves, exits 0 on SIGTERM."""
    d = tempfile.mkdtemp(prefix="sigrelay-systemd-")
    try:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))}
        env["WATCHDOG_USEC"] = "400000"  # without NOTIFY_SOCKET: nowhere to send, no harm
        with Process(relay_argv(port, rt.tenants_file(d, free_port())), port=port, env=env) as p:
            p.proc.send_signal(signal.SIGHUP)
            time.sleep(0.3)
            assert p.stop() == 0, p.stderr()
            assert "reloaded" in p.stderr(), p.stderr()
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    harness.run(6)
