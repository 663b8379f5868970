"""sigrelay against a smart host that misbehaves: pooled connections that die
at MAIL (Exchange Online's 421 after its quota of messages per connection, an
EOF, a reset) or while idle, a connection dropped at each phase of a
transaction, 421s and timeouts toward the smart host, messages abandoned
mid-stream, and slow uploads that must not starve a tenant's other mail.

The smart host is tests/integration/smarthost.py (a scriptable fake over
STARTTLS with the test certificates, verifying the tenant's client
certificate); its JSON-lines event log and saved messages are what the cases
check besides the replies the clients get. Every reply any client of this file
receives is recorded: the last case checks that none was a 421 on a connection
that stayed open.

SIGRELAY_TEST_SCALE (float, default 1.0) shrinks sizes and the slow uploads'
duration (for sanitizer builds).

usage: faults_test.py SIGRELAY SINK BLASTER CERTS_DIR EXAMPLES_DIR [case ...]"""
import functools
import glob
import json
import os
import shutil
import socket
import ssl
import struct
import sys
import tempfile
import threading
import time

import harness
from harness import case, free_port

with harness.helpers_only():
    import relay_test as rt  # tenants_file, start_relay, http_get, metric_sum, cert(): same argv

from relay_test import CERTS, RELAY_NAME, cert

SMARTHOST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "smarthost.py")
SCALE = float(os.environ.get("SIGRELAY_TEST_SCALE") or "1.0")
SENDER = "jane.doe@fabrikam.com"
KiB = 1024
PHASES = ("after_greeting", "after_ehlo", "during_tls_handshake", "after_mail", "after_rcpt", "mid_body",
          "after_body_before_reply")

# Every reply a client of this file got: (case, what, code, last line, closed right after).
REPLIES = []
REPLIES_LOCK = threading.Lock()
CURRENT = ["?"]


def fcase(fn):
    """A case whose clients' replies are recorded under its name."""
    @functools.wraps(fn)
    def run():
        CURRENT[0] = fn.__name__
        return fn()
    return case(run)


# --- the fake smart host and a relay in front of it ------------------------------

class FakeHost:
    """smarthost.py as a subprocess; `control` is the initial fault JSON."""

    def __init__(self, control=None, flags=()):
        self.dir = tempfile.mkdtemp(prefix="sigrelay-faults-")
        self.save = os.path.join(self.dir, "saved")
        self.events_path = os.path.join(self.dir, "events.jsonl")
        self.control = os.path.join(self.dir, "control.json")
        self.port = free_port()
        self.set(**(control or {}))
        self.proc = harness.Process([sys.executable, SMARTHOST, "--listen", f"127.0.0.1:{self.port}",
                                     "--certs", CERTS, "--save-dir", self.save, "--events", self.events_path,
                                     "--control", self.control] + list(flags))
        deadline = time.monotonic() + 10
        while not self.events("listening"):
            if self.proc.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(f"smarthost.py did not start: {self.proc.stderr()}")
            time.sleep(0.02)

    def set(self, **conf):
        """The faults for connections opened from now on."""
        tmp = self.control + ".tmp"
        with open(tmp, "w") as f:
            json.dump(conf, f)
        os.rename(tmp, self.control)

    def events(self, ev=None):
        try:
            with open(self.events_path) as f:
                out = [json.loads(line) for line in f if line.endswith("\n")]
        except FileNotFoundError:
            return []
        return [e for e in out if ev is None or e["ev"] == ev]

    def files(self):
        return sorted(glob.glob(os.path.join(self.save, "*.eml")))

    def copies(self, tag):
        """How many saved messages carry `tag` in their Subject."""
        needle = b"\r\nSubject: " + tag.encode() + b"\r\n"
        n = 0
        for path in self.files():
            with open(path, "rb") as f:
                n += f.read().count(needle)
        return n

    def wait_files(self, count, timeout=10):
        deadline = time.monotonic() + timeout
        while len(self.files()) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return len(self.files())

    def excerpt(self, last=40, conns=None):
        evs = [e for e in self.events() if conns is None or e["conn"] in conns]
        return "\n".join(json.dumps(e) for e in evs[-last:])

    def close(self):
        self.proc.kill()
        err = self.proc.stderr()
        self.proc.__exit__()
        assert "BUG" not in err, f"smarthost.py: {err}"


class Rig:
    """A FakeHost as tenant fabrikam's smart host, and a relay in front of it."""

    def __init__(self, control=None, host_flags=(), relay_extra=()):
        self.host = FakeHost(control, host_flags)
        try:
            self.relay_port, self.metrics_port = free_port(), free_port()
            tenants = rt.tenants_file(self.host.dir, self.host.port)
            self.relay = rt.start_relay(self.relay_port, tenants, "--metrics-listen",
                                        f"127.0.0.1:{self.metrics_port}", *relay_extra)
        except Exception:
            self.host.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.relay.__exit__()
        self.host.close()
        shutil.rmtree(self.host.dir, ignore_errors=True)

    def metric(self, name):
        status, text = rt.http_get(self.metrics_port, "/metrics")
        assert status == 200, status
        return rt.metric_sum(text, name)

    def metrics_text(self):
        return rt.http_get(self.metrics_port, "/metrics")[1]

    def logs(self, last=40):
        return (f"\n--- relay stderr (tail) ---\n{self.relay.stderr()[-4000:]}"
                f"\n--- smart host events (tail) ---\n{self.host.excerpt(last)}")


# --- an SMTP client that records every reply --------------------------------------

class Client:
    """EHLO, STARTTLS, EHLO on a raw socket; what it sends goes out as given."""

    def __init__(self, port, timeout=30, label="client"):
        self.label = label
        self.raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock, self.buf = self.raw, b""
        code, lines = self.reply("greeting")
        assert code == 220, lines
        self.cmd(b"EHLO exo.test")
        code, lines = self.cmd(b"STARTTLS")
        assert code == 220 and not self.buf, lines
        self.sock = ssl.create_default_context(cafile=cert("ca.pem")).wrap_socket(self.raw, server_hostname=RELAY_NAME)
        code, lines = self.cmd(b"EHLO exo.test")
        assert code == 250, lines

    def send(self, data):
        self.sock.sendall(data)

    def reply(self, what="?"):
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                data = self.sock.recv(1 << 16)
                if not data:
                    raise ConnectionError(f"{self.label}: closed by the relay (waiting for the reply to {what}, "
                                          f"after {lines!r})")
                self.buf += data
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line)
            if line[3:4] != b"-":
                break
        code = int(lines[-1][:3])
        closed = None
        if code == 421:  # then the connection must end: does it?
            closed = self._closes_within(3.0)
        with REPLIES_LOCK:
            REPLIES.append((CURRENT[0], f"{self.label} {what}", code, lines[-1].decode(errors="replace"), closed))
        return code, lines

    def _closes_within(self, seconds):
        old = self.sock.gettimeout()
        self.sock.settimeout(seconds)
        try:
            data = self.sock.recv(1 << 16)
            if data:
                self.buf += data
                return False
            return True
        except socket.timeout:
            return False
        except (ConnectionError, ssl.SSLError):
            return True
        finally:
            self.sock.settimeout(old)

    def cmd(self, line):
        self.send(line + b"\r\n")
        return self.reply(line.split(b" ")[0].decode())

    def transaction(self, message, rcpts=("bob@example.net",), mode="data", piece=16 * KiB, pace=0.0):
        """MAIL and the RCPTs as one pipelined group, then the message by DATA
        (dot-stuffed here) or BDAT chunks of `piece` octets (each reply read
        before the next chunk), `pace` seconds between pieces; or, with
        "bdat-pipelined", MAIL, RCPTs and one BDAT LAST in a single write. Returns
        (outcome, steps): the final reply's code, or the first failure's, and
        every (command, code, last line)."""
        steps = []
        group = b"MAIL FROM:<%s>\r\n" % SENDER.encode() + b"".join(b"RCPT TO:<%s>\r\n" % r.encode() for r in rcpts)
        if mode == "bdat-pipelined":  # everything in one write, as RFC 2920 and 3030 allow
            self.send(group + b"BDAT %d LAST\r\n" % len(message) + message)
        else:
            self.send(group)
        code, lines = self.reply("MAIL")
        steps.append(("MAIL", code, lines[-1]))
        accepted = 0
        for _ in rcpts:
            c, l = self.reply("RCPT")
            steps.append(("RCPT", c, l[-1]))
            accepted += c < 300
        if mode == "bdat-pipelined":
            c, l = self.reply("BDAT LAST")
            steps.append(("BDAT LAST", c, l[-1]))
            return (code if code >= 300 else c), steps
        if code >= 300:
            return code, steps
        if not accepted:
            return next(c for w, c, _ in steps if w == "RCPT"), steps
        if mode == "data":
            code, lines = self.cmd(b"DATA")
            steps.append(("DATA", code, lines[-1]))
            if code != 354:
                return code, steps
            wire = dot_stuff(message) + b".\r\n"
            for off in range(0, len(wire), piece):
                if pace and off:
                    time.sleep(pace)
                self.send(wire[off:off + piece])
            code, lines = self.reply("end of data")
            steps.append(("end of data", code, lines[-1]))
            return code, steps
        view = memoryview(message)
        for off in range(0, len(view), piece):
            if pace and off:
                time.sleep(pace)
            chunk = view[off:off + piece]
            last = off + piece >= len(view)
            self.send(b"BDAT %d%s\r\n" % (len(chunk), b" LAST" if last else b""))
            self.send(chunk)
            code, lines = self.reply("BDAT LAST" if last else "BDAT")
            steps.append(("BDAT LAST" if last else "BDAT", code, lines[-1]))
            if code != 250 or last:
                return code, steps
        raise AssertionError("empty message")

    def close(self, reset=False):
        if reset:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        try:
            self.sock.close()
        finally:
            self.raw.close()


def dot_stuff(content):
    assert content.endswith(b"\r\n")
    return (b"\r\n" + content).replace(b"\r\n.", b"\r\n..")[2:]


def message(tag, size=0):
    """A text/plain message whose Subject is `tag`, about `size` octets, with
    dot lines in it."""
    head = (b"From: Jane Doe <jane.doe@fabrikam.com>\r\nTo: Bob <bob@example.net>\r\nSubject: %s\r\n"
            b"Message-ID: <%s@fabrikam.com>\r\nDate: Thu, 03 Dec 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: text/plain; charset=us-ascii\r\n\r\n" % (tag.encode(), tag.encode()))
    body = [b"Hi Bob,\r\n", b".a line with a leading dot\r\n", b"\r\n"]
    n = len(head) + sum(map(len, body))
    k = 0
    while n < size:
        line = b"%s line %06d: the quick brown fox jumps over the lazy dog\r\n" % (tag.encode()[:40], k)
        body.append(line if k % 50 else b"." + line)
        n += len(body[-1])
        k += 1
    return head + b"".join(body) + b"-- \r\nJane\r\n"


def mixed_message(tag, size):
    """multipart/mixed: a short text part (the one signed) and an attachment of
    about `size` octets after it, which the relay streams as it arrives."""
    b = b"=_faults_mixed"
    line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\r\n"
    head = (b"From: Jane Doe <jane.doe@fabrikam.com>\r\nTo: Bob <bob@example.net>\r\nSubject: %s\r\n"
            b"Message-ID: <mixed-%d@fabrikam.com>\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="%s"\r\n\r\n' % (tag.encode(), time.time_ns(), b))
    first = (b"--%s\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nHi Bob,\r\n\r\nthe file.\r\n"
             b"--%s\r\nContent-Type: application/octet-stream; name=\"f.bin\"\r\n"
             b"Content-Disposition: attachment; filename=\"f.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
             % (b, b))
    return head + first + line * max(1, size // len(line)) + b"--%s--\r\n" % b


RCPTS = ("bob@example.net", "carol@example.net", "dave@example.net")


def delivered(host):
    """Subject -> the recipient lists of the saved copies (from the event log)."""
    out = {}
    for e in host.events("message"):
        with open(os.path.join(host.save, e["file"]), "rb") as f:
            raw = f.read()
        i = raw.index(b"\r\nSubject: ") + 11
        subject = raw[i:raw.index(b"\r\n", i)].decode()
        out.setdefault(subject, []).append(e["rcpts"])
    return out


def ok(outcome_steps):
    code, steps = outcome_steps
    return code == 250 and b"queued as fake-" in steps[-1][2]


def concurrently(fn, n, timeout=120):
    results, errors = [None] * n, []

    def run(i):
        try:
            results[i] = fn(i)
        except BaseException as e:
            errors.append((i, e))
    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), f"clients still running after {timeout}s"
    if errors:
        i, e = errors[0]
        raise AssertionError(f"client {i}: {e!r}") from e
    return results


def each_once(rig, tags, extra_wait=0.5):
    """Every tag's message arrived exactly once (and nothing else arrived)."""
    rig.host.wait_files(len(tags))
    time.sleep(extra_wait)  # a duplicate would arrive late
    counts = {t: rig.host.copies(t) for t in tags}
    bad = {t: n for t, n in counts.items() if n != 1}
    assert not bad, f"copies per message (expected 1 each): {bad}" + rig.logs()
    assert len(rig.host.files()) == len(tags), (len(rig.host.files()), len(tags), rig.logs())


# --- 1. a pooled connection dead at MAIL ----------------------------------------------

@fcase
def pooled_connection_dead_at_mail_is_replaced_invisibly():
    """The smart host answers the third MAIL on each connection with 421 (and
    closes), or closes at it without a reply, or resets it: 10 messages over one
    client connection, then 10 over five concurrent ones, all get the smart
    host's 250 and arrive once; each fault cost exactly one retry."""
    for kind in ("421", "eof", "rst"):
        with Rig({"mail_fault_at": 3, "mail_fault": kind}) as r:
            tags = []
            c = Client(r.relay_port, label="seq")
            want_rcpts = {}
            for i in range(10):
                tag = f"dead-at-mail {kind} seq {i}"
                tags.append(tag)
                want_rcpts[tag] = RCPTS[:1 + i % 3]  # the RCPTs pipelined behind MAIL go again too
                out = c.transaction(message(tag), rcpts=want_rcpts[tag], mode="bdat-pipelined" if i % 2 else "data")
                assert ok(out), (kind, i, out, r.logs())
                assert all(s[1] in (250, 354) for s in out[1]), (kind, i, out)
            c.cmd(b"QUIT")
            c.close()

            def two_each(k):
                cl = Client(r.relay_port, label=f"par{k}")
                for j in range(2):
                    tag = f"dead-at-mail {kind} par {k}.{j}"
                    out = cl.transaction(message(tag))
                    assert ok(out), (kind, k, j, out)
                cl.cmd(b"QUIT")
                cl.close()
                return [f"dead-at-mail {kind} par {k}.{j}" for j in range(2)]
            for t in concurrently(two_each, 5):
                tags += t
            each_once(r, tags)
            got = delivered(r.host)
            for tag, rcpts in want_rcpts.items():
                assert got[tag] == [[f"<{x}>" for x in rcpts]], (kind, tag, got[tag], r.logs())
            faults = [e for e in r.host.events("fault") if "at MAIL" in e["fault"]]
            retries = r.metric("sigrelay_outbound_retries_total")
            conns = len(r.host.events("open"))
            assert len(faults) >= 4, (kind, faults, r.logs())
            assert retries == len(faults), (kind, f"{retries} retries for {len(faults)} dead connections", r.logs())
            print(f"     {kind}: 20 messages, {len(faults)} connections died at MAIL, {retries:.0f} retries, "
                  f"{conns} smart-host connections", flush=True)


# --- 2. a smart host that closes idle connections -----------------------------------

@fcase
def smart_host_closing_idle_connections_costs_the_client_nothing():
    """Connections idle 0.5 s are closed by the smart host (silently, or with a
    421 first); messages 1 s apart all get 250, each arrives once; and so do
    messages 0.45-0.56 s apart, racing the smart host's close."""
    for say_421 in (False, True):
        label = "421 then close" if say_421 else "silent close"
        with Rig({"idle_close": 0.5, "idle_close_421": say_421}) as r:
            tags = []
            c = Client(r.relay_port, label="kept")
            for i in range(4):
                if i:
                    time.sleep(1.0)
                tag = f"idle-close {int(say_421)} kept {i}"
                tags.append(tag)
                out = c.transaction(message(tag))
                assert ok(out), (label, i, out, r.logs())
            c.cmd(b"QUIT")
            c.close()
            for i in range(2):
                time.sleep(1.0)
                c = Client(r.relay_port, label="new")
                tag = f"idle-close {int(say_421)} new {i}"
                tags.append(tag)
                out = c.transaction(message(tag))
                assert ok(out), (label, i, out, r.logs())
                c.close()
            each_once(r, tags)
            closed = [e for e in r.host.events("fault") if e["fault"].startswith("idle_close")]
            assert len(closed) >= 5, (label, closed, r.logs())
            if not say_421:
                # Pauses around the smart host's 0.5 s: sometimes MAIL meets a
                # connection closing at that very moment.
                c = Client(r.relay_port, label="race")
                for i in range(12):
                    time.sleep(0.45 + 0.01 * i)
                    tag = f"idle-close race {i}"
                    tags.append(tag)
                    out = c.transaction(message(tag))
                    assert ok(out), (label, "race", i, out, r.logs())
                c.close()
                each_once(r, tags)
            closed = [e for e in r.host.events("fault") if e["fault"].startswith("idle_close")]
            print(f"     {label}: {len(tags)} messages, the smart host closed {len(closed)} idle connections, "
                  f"{r.metric('sigrelay_outbound_retries_total'):.0f} retries", flush=True)


# --- 3. the fault matrix ------------------------------------------------------------

@fcase
def fault_matrix_every_phase_gives_4yz_at_most_once_and_the_session_goes_on():
    """For each phase at which the smart host drops the connection (for every
    connection while the fault is on), with and without CHUNKING at the smart
    host and DATA or BDAT from the client (and with a reset instead of a FIN):
    the client gets a 4yz, the message is delivered at most once (at most once
    even in RFC 1047's window, after the body and before the reply), and once
    the fault is off the next transaction on the same client connection gets
    250."""
    size = max(16 * KiB, int(96 * KiB * SCALE))
    table, problems = [], []
    combos = [(hc, mode, phase, "fin") for hc in (True, False) for mode in ("data", "bdat") for phase in PHASES]
    combos += [(True, "data", phase, "rst") for phase in PHASES]  # a reset instead of a FIN
    for host_chunking, mode, phase, how in combos:
        where = f"{phase:<24} {how.upper()} host {'BDAT' if host_chunking else 'DATA'} client {mode.upper()}"
        with Rig({"drop_at": phase, "drop_how": how, "mid_body_bytes": 8 * KiB, "chunking": host_chunking}) as r:
            c = Client(r.relay_port, label=phase)
            tag1, tag2 = f"matrix {where} faulted", f"matrix {where} next"
            t0 = time.monotonic()
            code, steps = c.transaction(message(tag1, size), mode=mode, piece=32 * KiB)
            took = time.monotonic() - t0
            failed_at = next(((w, cd, ln) for w, cd, ln in steps if cd >= 400), steps[-1])
            mails = sum(1 for e in r.host.events("cmd") if e["cmd"].startswith("MAIL"))
            if code != 250:
                assert c.cmd(b"RSET")[0] == 250, (where, r.logs())
            r.host.set(chunking=host_chunking)  # the fault is off for new connections
            code2, steps2 = c.transaction(message(tag2, size), mode=mode, piece=32 * KiB)
            r.host.wait_files(1, timeout=2)
            time.sleep(0.3)
            copies1, copies2 = r.host.copies(tag1), r.host.copies(tag2)
            table.append(f"{where}: {failed_at[0]} -> {failed_at[2].decode(errors='replace')[:70]} "
                         f"({took:.2f}s, {mails} MAIL at the smart host); copies {copies1}; "
                         f"next: {code2}")
            if not 400 <= code < 500:
                problems.append(f"{where}: the client got {code} ({steps}), not 4yz")
            if copies1 > 1 or (copies1 and phase != "after_body_before_reply"):
                problems.append(f"{where}: {copies1} copies of the faulted message")
            if phase == "after_mail" and mails != 2:
                problems.append(f"{where}: {mails} MAILs at the smart host (one retry expected)")
            if not ok((code2, steps2)) or copies2 != 1:
                problems.append(f"{where}: next transaction {code2} {steps2}, {copies2} copies")
            if problems and problems[-1].startswith(where):
                problems[-1] += r.logs(25)
            c.cmd(b"QUIT")
            c.close()
    print("     " + "\n     ".join(table), flush=True)
    assert not problems, "\n\n".join(problems)


# --- 4. slow uploads do not starve the tenant -------------------------------------------

@fcase
def slow_uploads_do_not_delay_the_tenants_other_messages():
    """Twelve clients trickle their messages at about 1 KiB/s (twice the
    default --min-data-rate of 500 B/s) to one tenant on one shard; meanwhile 20
    ordinary messages to the same tenant each get 250 within a few seconds."""
    slow_n, normal_n = 12, 20
    seconds = max(6.0, 10.0 * SCALE)
    bound = 5.0 if SCALE >= 1 else 8.0
    step = 0.25
    slow_size = int(seconds * KiB)
    with Rig(relay_extra=("--threads", "1")) as r:
        assert 'shard="1"' not in r.metrics_text(), "the relay runs more than one shard"
        slow_done = [None] * slow_n

        def slow(i):
            c = Client(r.relay_port, timeout=60, label=f"slow{i}")
            tag = f"slow upload {i}"
            t0 = time.monotonic()
            out = c.transaction(message(tag, slow_size), mode="data" if i % 2 else "bdat",
                                piece=int(KiB * step), pace=step)
            slow_done[i] = time.monotonic()
            c.cmd(b"QUIT")
            c.close()
            return tag, out, slow_done[i] - t0

        slow_results = []
        slow_thread = threading.Thread(target=lambda: slow_results.extend(concurrently(slow, slow_n, 120)),
                                       daemon=True)
        slow_thread.start()
        time.sleep(1.5)  # every slow client is in its DATA/BDAT by now

        def normal(i):
            c = Client(r.relay_port, label=f"normal{i}")
            tag = f"normal message {i}"
            t0 = time.monotonic()
            out = c.transaction(message(tag, 4 * KiB))
            t = time.monotonic() - t0
            end = time.monotonic()
            c.cmd(b"QUIT")
            c.close()
            return tag, out, t, end
        t_normal = time.monotonic()
        normals = concurrently(normal, normal_n, 60)
        normals_end = max(n[3] for n in normals)
        slow_thread.join(seconds + 60)
        assert not slow_thread.is_alive() and len(slow_results) == slow_n, ("slow clients did not finish",
                                                                            slow_results, r.logs())
        times = sorted(n[2] for n in normals)
        print(f"     {normal_n} ordinary messages during {slow_n} uploads at 1 KiB/s: "
              f"slowest {times[-1]:.2f}s, median {times[len(times) // 2]:.2f}s, all done "
              f"{normals_end - t_normal:.2f}s after the first began; uploads took "
              f"{min(s[2] for s in slow_results):.1f}-{max(s[2] for s in slow_results):.1f}s", flush=True)
        for tag, out, t, _ in normals:
            assert ok(out), (tag, out, r.logs())
            assert t < bound, f"{tag}: 250 after {t:.2f}s (bound {bound}s) while the uploads trickled" + r.logs()
        assert all(d is not None and d > normals_end for d in slow_done), \
            "the uploads had ended before the ordinary messages: nothing was tested"
        for tag, out, _ in slow_results:
            assert ok(out), (tag, out, r.logs())
        each_once(r, [n[0] for n in normals] + [s[0] for s in slow_results])
        opened = len(r.host.events("open"))
        assert opened >= slow_n + 1, f"only {opened} smart-host connections for {slow_n} uploads and more"


# --- 5. the smart host's 421 and our timeouts reach the client as 451 --------------------

@fcase
def smart_host_421_and_timeouts_reach_the_client_as_451_on_an_open_session():
    # 421 to the first MAIL of every connection: retried once, then 451.
    with Rig({"mail_fault_at": 1}) as r:
        c = Client(r.relay_port, label="421-at-every-mail")
        code, steps = c.transaction(message("421 at every MAIL"))
        mails = sum(1 for e in r.host.events("cmd") if e["cmd"].startswith("MAIL"))
        assert code == 451 and steps[0][2].startswith(b"451 4."), (steps, r.logs())
        assert [s[1] for s in steps[1:]] == [503], steps
        assert mails == 2, f"{mails} MAILs at the smart host: one retry expected" + r.logs()
        assert c.cmd(b"NOOP")[0] == 250
        r.host.set()
        assert ok(c.transaction(message("after 421 at every MAIL"))), r.logs()
        print(f"     421 to every MAIL: the client got {steps[0][2].decode()} after {mails} tries", flush=True)
        c.close()
    # 421 to the second RCPT (and the connection closed).
    with Rig({"rcpt_reply": {"2": "421 4.3.2 Service not available, closing transmission channel"}}) as r:
        c = Client(r.relay_port, label="421-at-rcpt")
        code, steps = c.transaction(message("421 at RCPT 2"), rcpts=("bob@example.net", "carol@example.net",
                                                                     "dave@example.net"))
        rc = [s for s in steps if s[0] == "RCPT"]
        assert steps[0][1] == 250 and rc[0][1] == 250, (steps, r.logs())
        assert rc[1][2].startswith(b"451 4.3.2"), ("the smart host's 421 4.3.2 must reach the client as 451 4.3.2",
                                                   steps, r.logs())
        assert 400 <= rc[2][1] < 500 and 400 <= code < 500, (steps, r.logs())
        if code != 250:
            assert c.cmd(b"RSET")[0] == 250
        r.host.set()
        assert ok(c.transaction(message("after 421 at RCPT"))), r.logs()
        time.sleep(0.3)
        assert r.host.copies("421 at RCPT 2") == 0
        print(f"     421 to RCPT 2: the client got {' / '.join(s[2].decode()[:40] for s in steps[2:])}", flush=True)
        c.close()
    # The smart host is slower than --data-timeout: 451 4.4.2, the session goes on.
    with Rig({"final_delay": 4}, relay_extra=("--data-timeout", "1")) as r:
        c = Client(r.relay_port, label="slow-final-reply")
        t0 = time.monotonic()
        code, steps = c.transaction(message("slow final reply"))
        took = time.monotonic() - t0
        assert code == 451 and steps[-1][2].startswith(b"451 4.4.2"), (steps, r.logs())
        assert c.cmd(b"NOOP")[0] == 250
        r.host.set()
        assert ok(c.transaction(message("after the slow final reply"))), r.logs()
        time.sleep(0.3)
        assert r.host.copies("slow final reply") <= 1
        print(f"     final reply slower than --data-timeout 1: {steps[-1][2].decode()} after {took:.1f}s", flush=True)
        c.close()


# --- 6. an abandoned message is never completed at the smart host --------------------

def completed_at_host(rig):
    """Connections that ended a message: a BDAT ... LAST, or a final dot."""
    out = [e for e in rig.host.events("chunk") if e["last"]]
    return out + rig.host.events("dot")


@fcase
def abandoned_message_is_never_completed_at_the_smart_host():
    """A client that goes away mid-message (FIN in DATA, RST in BDAT), or a
    message that grows over --max-message-size: the smart host got part of it,
    never its LAST chunk or final dot, and saved nothing; the relay goes on."""
    size = max(128 * KiB, int(512 * KiB * SCALE))
    limit = size // 2
    for host_chunking in (True, False):
        for mode in ("data", "bdat"):
            where = f"host {'BDAT' if host_chunking else 'DATA'} client {mode.upper()}"
            with Rig({"chunking": host_chunking}, relay_extra=("--max-message-size", str(limit))) as r:
                # the client goes away half way
                m = mixed_message(f"abandoned {where}", size)
                c = Client(r.relay_port, label="abandon")
                c.send(b"MAIL FROM:<%s>\r\nRCPT TO:<bob@example.net>\r\n" % SENDER.encode())
                assert c.reply("MAIL")[0] == 250 and c.reply("RCPT")[0] == 250, r.logs()
                if mode == "data":
                    assert c.cmd(b"DATA")[0] == 354
                    c.send(dot_stuff(m)[:limit // 2])
                else:
                    for off in range(0, limit // 2, 16 * KiB):
                        c.send(b"BDAT %d\r\n" % (16 * KiB) + m[off:off + 16 * KiB])
                        assert c.reply("BDAT")[0] == 250, r.logs()
                time.sleep(0.3)
                c.close(reset=(mode == "bdat"))
                time.sleep(0.7)
                assert not completed_at_host(r) and not r.host.files(), \
                    (where, completed_at_host(r), r.host.files(), r.logs())
                if host_chunking:  # the chunks it had were dropped with RSET, or with the connection
                    had = sum(e["size"] for e in r.host.events("chunk"))
                    assert had > 0, (where, "the relay did not stream the message", r.logs())
                    ended = [e.get("cmd") or "closed" for e in r.host.events()
                             if e["ev"] == "close" or e.get("cmd") == "RSET"]
                    assert ended, (where, r.logs())
                else:  # a DATA stream can only be closed
                    in_data = {e["conn"] for e in r.host.events("cmd") if e["cmd"] == "DATA"}
                    gone = {e["conn"] for e in r.host.events("close")}
                    assert in_data and in_data <= gone, (where, in_data, gone, r.logs())
                    had, ended = "?", ["closed"]
                # over the size limit: 552, nothing completed, the session goes on
                c = Client(r.relay_port, label="too-big")
                code, steps = c.transaction(m, mode=mode, piece=16 * KiB)
                assert 500 <= code < 600 and steps[-1][2].startswith(b"552"), (where, steps, r.logs())
                time.sleep(0.5)
                assert not completed_at_host(r) and not r.host.files(), (where, completed_at_host(r), r.logs())
                assert c.cmd(b"RSET")[0] == 250, r.logs()
                ok_tag = f"after abandoning {where}"
                assert ok(c.transaction(message(ok_tag), mode=mode)), (where, r.logs())
                c.close()
                each_once(r, [ok_tag])
                print(f"     {where}: client gone after {limit // 2} octets: the smart host had {had} octets "
                      f"of chunks, then {ended[0]}; over --max-message-size: {steps[-1][0]} -> "
                      f"{steps[-1][2].decode()[:40]}", flush=True)


# --- 7. never a 421 on an open session -------------------------------------------------

@fcase
def no_client_saw_a_421_on_a_connection_that_stayed_open():
    """Scans every reply the clients of the cases above received."""
    with REPLIES_LOCK:
        replies = list(REPLIES)
    assert replies, "no replies recorded: run the other cases first"
    bad = [r for r in replies if r[2] == 421 and not r[4]]
    seen421 = [r for r in replies if r[2] == 421]
    classes = {}
    for r in replies:
        classes[f"{r[2] // 100}yz"] = classes.get(f"{r[2] // 100}yz", 0) + 1
    print(f"     {len(replies)} replies scanned {classes}; 421s: {len(seen421)} (closed after: "
          f"{sum(1 for r in seen421 if r[4])})", flush=True)
    assert not bad, "421 on a connection that stayed open:\n" + "\n".join(map(repr, bad))


if __name__ == "__main__":
    harness.run(5)
