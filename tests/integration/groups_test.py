"""Recipient groups (split_recipients) end to end: a tenant whose rules give
internal and external recipients different signatures keeps one group per
transaction; an RCPT of the other group is answered 452 4.5.3 (in its turn
among pipelined replies) and the client sends it again in a new transaction.

Clients: smtplib and a raw socket over STARTTLS with the test CA. Smart hosts:
smarthost-sink (saving each message; its --json counters give the recipients
it accepted) and, where the smart host must refuse a recipient,
tests/integration/smarthost.py (whose event log records each envelope).

usage: groups_test.py SIGRELAY SINK BLASTER CERTS_DIR EXAMPLES_DIR [case ...]"""
import email
import email.policy
import json
import os
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time

import harness
from harness import case, free_port

with harness.helpers_only():
    import relay_test as rt  # Setup, tenants_file, start_sink/start_relay, http_get, metric_sum: same argv

from relay_test import CERTS, RELAY, RELAY_NAME, cert

SMARTHOST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "smarthost.py")
SENDER = "jane.doe@fabrikam.com"
INTERNAL = "colleague@fabrikam.com"
EXTERNAL = "buyer@example.net"
DEFERRED = "sigrelay_recipients_deferred_total"

# The rules of the cases: external readers get one signature, everyone else another.
GROUP_RULES = [{"when": {"recipients": "external"}, "template": "external"}, {"template": "internal"}]
GROUP_TEMPLATES = {
    "external": {"html_file": "groups/external.html", "text_file": "groups/external.txt", "placement": "bottom"},
    "internal": {"html_file": "groups/internal.html", "text_file": "groups/internal.txt", "placement": "bottom"},
}
EXT_SIG = "EXTERNAL-SIG Jane Doe"
INT_SIG = "INTERNAL-SIG Jane Doe"


def reply_452(group):
    return ("4.5.3 Internal and external recipients get different signatures: send this %s recipient "
            "in a separate transaction" % group).encode()


def split_log(rcpt, group, fixed):
    return (f"tenant fabrikam: RCPT TO:<{rcpt}> is {group}, this transaction's recipients are {fixed}; "
            "452 4.5.3 (split_recipients)")


def write_templates(d):
    os.makedirs(os.path.join(d, "groups"), exist_ok=True)
    for name in ("external", "internal"):
        tag = name.upper() + "-SIG"
        with open(os.path.join(d, "groups", name + ".html"), "w") as f:
            f.write(f"<p>{tag} {{{{display_name}}}}</p>\n")
        with open(os.path.join(d, "groups", name + ".txt"), "w") as f:
            f.write(f"{tag} {{{{display_name}}}}\n")


def group_tenant(**extra):
    conf = {"templates": GROUP_TEMPLATES, "rules": GROUP_RULES}
    conf.update(extra)
    return conf


class Groups(rt.Setup):
    """relay_test's Setup (sink + relay with --metrics-listen) with the group
    templates beside the tenants file; on a clean exit the relay must stop 0."""

    def __init__(self, sink_extra=(), relay_extra=(), **fabrikam_extra):
        self.dir = tempfile.mkdtemp(prefix="sigrelay-groups-")
        self.save = os.path.join(self.dir, "saved")
        self.sink_port, self.relay_port, self.metrics_port = free_port(), free_port(), free_port()
        write_templates(self.dir)
        self.tenants = rt.tenants_file(self.dir, self.sink_port, **fabrikam_extra)
        self.sink = rt.start_sink(self.sink_port, self.save, *sink_extra)
        try:
            self.relay = rt.start_relay(self.relay_port, self.tenants, "--metrics-listen",
                                        f"127.0.0.1:{self.metrics_port}", *relay_extra)
        except Exception:
            self.sink.__exit__()
            shutil.rmtree(self.dir, ignore_errors=True)
            raise

    def __exit__(self, exc_type, *exc):
        try:
            if exc_type is None:
                rc = self.relay.stop()
                assert rc == 0, f"sigrelay exited {rc} on SIGTERM:\n{self.relay.stderr()[-3000:]}"
        finally:
            self.relay.__exit__()
            self.sink.__exit__()
            shutil.rmtree(self.dir, ignore_errors=True)

    def deferred(self):
        status, text = rt.http_get(self.metrics_port, "/metrics")
        assert status == 200, status
        assert f"# TYPE {DEFERRED} counter" in text, text
        return rt.metric_sum(text, DEFERRED)

    def sink_counters(self):
        """Stops the sink; its --json counters (recipients = RCPTs it accepted)."""
        assert self.sink.stop() == 0, self.sink.stderr()
        return json.loads(self.sink.stdout().strip().splitlines()[-1])

    def exactly(self, count):
        """The saved messages, once there are `count`, after a moment for strays."""
        saved = self.saved(count)
        time.sleep(0.2)
        saved = self.saved(count + 1, timeout=0)
        assert len(saved) == count, f"{len(saved)} messages at the sink, want {count}"
        return saved


def message(subject="Groups", body="Hello,\n\nthe figures.\n"):
    m = rt.text_message(SENDER, subject=subject, body=body)
    return m.as_bytes()


def received_for(raw):
    """The `for <...>` clause of the relay's Received field (only with exactly
    one accepted recipient), or None."""
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    received = msg.get_all("Received") or []
    assert received, raw[:300]
    m = re.search(r"\sfor <([^>]*)>;", " ".join(received[0].split()))
    return m.group(1) if m else None


def body_text(raw):
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    return msg.get_body(("plain",)).get_content()


def signature_of(raw):
    text = body_text(raw)
    found = [sig for sig in (INT_SIG, EXT_SIG) if sig in text]
    assert len(found) == 1 and text.count(found[0]) == 1, text
    return found[0]


# --- a raw-socket client (what it sends is exactly what goes on the wire) -------

class Client:
    def __init__(self, port, timeout=20):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        assert self.reply()[0] == 220
        assert self.cmd(b"EHLO exo.test")[0] == 250
        code, lines = self.cmd(b"STARTTLS")
        assert code == 220 and not self.buf, lines
        ctx = ssl.create_default_context(cafile=cert("ca.pem"))
        self.sock = ctx.wrap_socket(self.sock, server_hostname=RELAY_NAME)
        self.ehlo = self.cmd(b"EHLO exo.test")
        assert self.ehlo[0] == 250, self.ehlo

    def reply(self):
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                data = self.sock.recv(1 << 16)
                if not data:
                    raise ConnectionError(f"closed by the relay after {lines!r}")
                self.buf += data
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line)
            if line[3:4] != b"-":
                return int(line[:3]), lines

    def cmd(self, line):
        self.sock.sendall(line + b"\r\n")
        return self.reply()

    def replies(self, n):
        """n replies, each as (code, last line)."""
        out = []
        for _ in range(n):
            code, lines = self.reply()
            out.append((code, lines[-1]))
        return out

    def close(self):
        try:
            self.sock.sendall(b"QUIT\r\n")
            self.reply()
        except OSError:
            pass
        self.sock.close()


def line_452(group):
    return b"452 " + reply_452(group)


# --- the cases -----------------------------------------------------------------

@case
def smtplib_mixed_recipients_are_sent_again_in_a_second_transaction():
    with Groups(**group_tenant()) as s:
        msg = message(subject="Mixed")
        with s.smtp() as c:
            refused = c.sendmail(SENDER, [INTERNAL, EXTERNAL], msg)
            assert refused == {EXTERNAL: (452, reply_452("external"))}, refused
            # What an RFC 5321 client (Exchange Online) does with a 452: the
            # recipient again, in a new transaction on the same connection.
            again = c.sendmail(SENDER, list(refused), msg)
            assert again == {}, again
        first, second = s.exactly(2)  # saved in order of arrival
        assert received_for(first) == INTERNAL, first[:400]
        assert signature_of(first) == INT_SIG
        assert received_for(second) == EXTERNAL, second[:400]
        assert signature_of(second) == EXT_SIG
        for raw in (first, second):
            assert "the figures." in body_text(raw) and raw.count(b"\r\nSignatureContoso: true\r\n") == 1
        assert s.deferred() == 1
        counters = s.sink_counters()
        assert counters["accepted"] == 2 and counters["recipients"] == 2, counters


@case
def the_first_recipient_fixes_the_group():
    with Groups(**group_tenant()) as s:
        with s.smtp() as c:
            # external first: the internal recipient is the one deferred
            refused = c.sendmail(SENDER, [EXTERNAL, INTERNAL], message(subject="ext-int"))
            assert refused == {INTERNAL: (452, reply_452("internal"))}, refused
            # ext, int, ext: only the internal one is refused, both external
            # recipients are in the one transaction
            refused = c.sendmail(SENDER, [EXTERNAL, INTERNAL, "seller@example.org"], message(subject="ext-int-ext"))
            assert refused == {INTERNAL: (452, reply_452("internal"))}, refused
        a, b = s.exactly(2)
        assert received_for(a) == EXTERNAL and signature_of(a) == EXT_SIG, a[:400]
        assert received_for(b) is None, "a Received for clause with two recipients"  # two were accepted
        assert signature_of(b) == EXT_SIG and b"Subject: ext-int-ext" in b
        assert s.deferred() == 2
        counters = s.sink_counters()
        assert counters["accepted"] == 2 and counters["recipients"] == 3, counters
        assert "rcpts=2 " in s.relay.stderr(), s.relay.stderr()[-2000:]


@case
def groups_compare_domains_as_tenant_resolution_does():
    with Groups(**group_tenant()) as s:
        with s.smtp() as c:
            assert c.mail(SENDER)[0] == 250
            assert c.rcpt("Colleague@FABRIKAM.COM")[0] == 250  # internal: domains are case-insensitive
            assert c.rcpt("it@fabrikam.onmicrosoft.com")[0] == 250  # the tenant's other domain
            assert c.rcpt("x@sub.fabrikam.com") == (452, reply_452("external"))  # a subdomain is external
            assert c.rcpt("x@fabrikam.com.example.net") == (452, reply_452("external"))
            code, _ = c.data(message(subject="domains"))
            assert code == 250, code
        [raw] = s.exactly(1)
        assert signature_of(raw) == INT_SIG
        assert s.deferred() == 2


@case
def rset_and_a_new_mail_clear_the_group():
    with Groups(**group_tenant()) as s:
        with s.smtp() as c:
            assert c.mail(SENDER)[0] == 250
            assert c.rcpt(EXTERNAL)[0] == 250
            assert c.rcpt(INTERNAL) == (452, reply_452("internal"))
            assert c.rset()[0] == 250
            assert c.mail(SENDER)[0] == 250
            assert c.rcpt(INTERNAL)[0] == 250, "RSET kept the previous transaction's group"
            assert c.rcpt(EXTERNAL) == (452, reply_452("external"))
            assert c.data(message(subject="after rset"))[0] == 250
        [raw] = s.exactly(1)
        assert received_for(raw) == INTERNAL and signature_of(raw) == INT_SIG
        assert s.deferred() == 2


@case
def pipelined_recipients_get_the_452_in_its_turn():
    with Groups(**group_tenant()) as s:
        c = Client(s.relay_port)
        try:
            assert any(l[4:].upper() == b"PIPELINING" for l in c.ehlo[1]), c.ehlo
            # MAIL + int + ext + int in one write, behind a MAIL not answered yet
            c.sock.sendall(b"MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nRCPT TO:<%s>\r\nRCPT TO:<%s>\r\n"
                           % (SENDER.encode(), INTERNAL.encode(), EXTERNAL.encode(), b"boss@fabrikam.com"))
            got = c.replies(4)
            assert [code for code, _ in got] == [250, 250, 452, 250], got
            assert got[2][1] == line_452("external"), got
            code, lines = c.cmd(b"DATA")
            assert code == 354, lines
            c.sock.sendall(message(subject="pipelined").replace(b"\r\n.", b"\r\n..") + b".\r\n")
            code, lines = c.reply()
            assert code == 250, lines
            # The same with BDAT LAST in the group: ext, int, int, ext, then the content.
            body = message(subject="pipelined bdat")
            c.sock.sendall(b"MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nRCPT TO:<%s>\r\nRCPT TO:<%s>\r\nRCPT TO:<%s>\r\n"
                           % (SENDER.encode(), EXTERNAL.encode(), INTERNAL.encode(), b"boss@fabrikam.com",
                              b"seller@example.org") + b"BDAT %d LAST\r\n" % len(body) + body)
            got = c.replies(6)
            assert [code for code, _ in got] == [250, 250, 452, 452, 250, 250], got
            assert got[2][1] == got[3][1] == line_452("internal"), got
        finally:
            c.close()
        first, second = s.exactly(2)
        assert signature_of(first) == INT_SIG and b"Subject: pipelined\r\n" in first
        assert signature_of(second) == EXT_SIG and b"Subject: pipelined bdat\r\n" in second
        assert received_for(first) is None and received_for(second) is None  # two recipients each
        assert s.deferred() == 3
        counters = s.sink_counters()
        assert counters["accepted"] == 2 and counters["recipients"] == 4, counters


@case
def split_recipients_false_relays_mixed_recipients_with_the_external_signature():
    with Groups(**group_tenant(split_recipients=False)) as s:
        with s.smtp() as c:
            refused = c.sendmail(SENDER, [INTERNAL, EXTERNAL], message(subject="no split"))
            assert refused == {}, refused
        [raw] = s.exactly(1)
        assert signature_of(raw) == EXT_SIG, "mixed recipients are external"
        assert received_for(raw) is None
        assert s.deferred() == 0
        counters = s.sink_counters()
        assert counters["accepted"] == 1 and counters["recipients"] == 2, counters
        assert "split_recipients" not in s.relay.stderr()


@case
def rules_without_recipients_do_not_split():
    with Groups() as s:  # relay_test's rules: [nosig] and a default template
        with s.smtp() as c:
            refused = c.sendmail(SENDER, [INTERNAL, EXTERNAL], message(subject="default rules"))
            assert refused == {}, refused
        [raw] = s.exactly(1)
        text = body_text(raw)
        assert "Jane Doe" in text and "Chief Executive Officer" in text, text
        assert s.deferred() == 0
        counters = s.sink_counters()
        assert counters["accepted"] == 1 and counters["recipients"] == 2, counters


@case
def split_recipients_true_splits_even_without_recipient_rules():
    with Groups(split_recipients=True) as s:
        with s.smtp() as c:
            refused = c.sendmail(SENDER, [INTERNAL, EXTERNAL], message(subject="forced split"))
            assert refused == {EXTERNAL: (452, reply_452("external"))}, refused
        [raw] = s.exactly(1)
        assert received_for(raw) == INTERNAL
        assert s.deferred() == 1


@case
def split_recipients_must_be_a_boolean():
    d = tempfile.mkdtemp(prefix="sigrelay-groups-")
    try:
        write_templates(d)
        path = rt.tenants_file(d, free_port(), **group_tenant(split_recipients="yes"))
        r = subprocess.run([RELAY, "--tenants", path, "--listen", f"127.0.0.1:{free_port()}",
                            "--tls-cert", cert("relay.pem"), "--tls-key", cert("relay.key")],
                           capture_output=True, text=True, timeout=20)
        assert r.returncode == 78, (r.returncode, r.stderr)
        assert "split_recipients" in r.stderr and "expected true or false, got" in r.stderr, r.stderr
    finally:
        shutil.rmtree(d, ignore_errors=True)


# --- a smart host that refuses recipients (smarthost.py) --------------------------

class FakeHost:
    """smarthost.py with its faults (`control`, e.g. rcpt_reply: {"n": "CODE
    text"} for the nth RCPT of a transaction), and a relay (fabrikam with the
    group rules) in front of it."""

    def __init__(self, control):
        self.dir = tempfile.mkdtemp(prefix="sigrelay-groups-")
        self.save = os.path.join(self.dir, "saved")
        self.events_path = os.path.join(self.dir, "events.jsonl")
        self.control = os.path.join(self.dir, "control.json")
        with open(self.control, "w") as f:
            json.dump(control, f)
        self.port, self.relay_port, self.metrics_port = free_port(), free_port(), free_port()
        self.host = harness.Process([sys.executable, SMARTHOST, "--listen", f"127.0.0.1:{self.port}",
                                     "--certs", CERTS, "--save-dir", self.save, "--events", self.events_path,
                                     "--control", self.control])
        self.relay = None
        try:
            deadline = time.monotonic() + 10
            while not self.events("listening"):
                assert self.host.proc.poll() is None and time.monotonic() < deadline, \
                    f"smarthost.py did not start: {self.host.stderr()}"
                time.sleep(0.02)
            write_templates(self.dir)
            tenants = rt.tenants_file(self.dir, self.port, **group_tenant())
            self.relay = rt.start_relay(self.relay_port, tenants, "--metrics-listen",
                                        f"127.0.0.1:{self.metrics_port}")
        except Exception:
            self.host.__exit__()
            shutil.rmtree(self.dir, ignore_errors=True)
            raise

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        try:
            if exc_type is None:
                rc = self.relay.stop()
                assert rc == 0, f"sigrelay exited {rc} on SIGTERM:\n{self.relay.stderr()[-3000:]}"
                assert "BUG" not in self.host.stderr(), self.host.stderr()
        finally:
            if self.relay:
                self.relay.__exit__()
            self.host.__exit__()
            shutil.rmtree(self.dir, ignore_errors=True)

    def events(self, ev=None):
        try:
            with open(self.events_path) as f:
                out = [json.loads(line) for line in f if line.endswith("\n")]
        except FileNotFoundError:
            return []
        return [e for e in out if ev is None or e["ev"] == ev]

    def messages(self, count, timeout=10):
        deadline = time.monotonic() + timeout
        while len(self.events("message")) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        msgs = self.events("message")
        assert len(msgs) == count, msgs
        out = []
        for m in msgs:
            with open(os.path.join(self.save, m["file"]), "rb") as f:
                out.append((m["rcpts"], f.read()))
        return out

    def smtp(self):
        c = smtplib.SMTP("127.0.0.1", self.relay_port, local_hostname="exo.test", timeout=20)
        c._host = RELAY_NAME
        c.starttls(context=ssl.create_default_context(cafile=cert("ca.pem")))
        c.ehlo("exo.test")
        return c

    def deferred(self):
        return rt.metric_sum(rt.http_get(self.metrics_port, "/metrics")[1], DEFERRED)


NO_SUCH_USER = "550 5.1.1 RESOLVER.ADR.RecipNotFound; not found"


@case
def a_group_whose_recipients_were_all_refused_is_chosen_anew():
    with FakeHost({"rcpt_reply": {"1": NO_SUCH_USER}}) as h:
        with h.smtp() as c:
            assert c.mail(SENDER)[0] == 250
            assert c.rcpt("gone@fabrikam.com") == (550, b"5.1.1 RESOLVER.ADR.RecipNotFound; not found")
            # the internal group has no recipient: the external one takes the transaction
            assert c.rcpt(EXTERNAL)[0] == 250, "the group of a refused recipient was kept"
            assert c.rcpt(INTERNAL) == (452, reply_452("internal"))
            assert c.rcpt("seller@example.org")[0] == 250
            assert c.data(message(subject="anew"))[0] == 250
        [(rcpts, raw)] = h.messages(1)
        assert rcpts == [f"<{EXTERNAL}>", "<seller@example.org>"], rcpts
        assert signature_of(raw) == EXT_SIG and received_for(raw) is None
        assert h.deferred() == 1


@case
def a_temporary_refusal_frees_the_group_too():
    with FakeHost({"rcpt_reply": {"1": "451 4.4.0 try later"}}) as h:
        with h.smtp() as c:
            assert c.mail(SENDER)[0] == 250
            assert c.rcpt(INTERNAL) == (451, b"4.4.0 try later")
            assert c.rcpt(EXTERNAL)[0] == 250
            assert c.rcpt("boss@fabrikam.com") == (452, reply_452("internal"))
            assert c.data(message(subject="temp"))[0] == 250
        [(rcpts, raw)] = h.messages(1)
        assert rcpts == [f"<{EXTERNAL}>"] and signature_of(raw) == EXT_SIG
        assert h.deferred() == 1


@case
def a_pending_recipient_keeps_its_group_even_if_refused_later():
    """Pipelined: while the first RCPT's answer is pending its group holds, so
    the other group's RCPT behind it is deferred even though the smart host
    then refuses the first."""
    with FakeHost({"rcpt_reply": {"1": NO_SUCH_USER}}) as h:
        c = Client(h.relay_port)
        try:
            c.sock.sendall(b"MAIL FROM:<%s>\r\nRCPT TO:<gone@fabrikam.com>\r\nRCPT TO:<%s>\r\n"
                           % (SENDER.encode(), EXTERNAL.encode()))
            got = c.replies(3)
            assert [code for code, _ in got] == [250, 550, 452], got
            assert got[2][1] == line_452("external"), got
            # the transaction has no recipient and no group: the next RCPT chooses
            assert c.cmd(b"RCPT TO:<%s>" % EXTERNAL.encode())[0] == 250
            assert c.cmd(b"DATA")[0] == 354
            c.sock.sendall(message(subject="pending") + b".\r\n")
            assert c.reply()[0] == 250
        finally:
            c.close()
        [(rcpts, raw)] = h.messages(1)
        assert rcpts == [f"<{EXTERNAL}>"] and signature_of(raw) == EXT_SIG
        assert h.deferred() == 1


@case
def the_452_keeps_its_turn_when_a_dead_pooled_connection_is_retried():
    """Exchange Online's 421 at MAIL on a pooled connection (its quota of
    messages per connection): MAIL and the admitted RCPTs go again on a new
    connection; the client's replies keep their order, the 452 among them."""
    with FakeHost({"mail_fault_at": 2}) as h:
        c = Client(h.relay_port)
        try:
            for i in range(2):  # the second MAIL on the pooled connection gets the 421
                c.sock.sendall(b"MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nRCPT TO:<%s>\r\nRCPT TO:<boss@fabrikam.com>\r\n"
                               b"DATA\r\n" % (SENDER.encode(), INTERNAL.encode(), EXTERNAL.encode()))
                got = c.replies(5)
                assert [code for code, _ in got] == [250, 250, 452, 250, 354], (i, got)
                assert got[2][1] == line_452("external"), got
                c.sock.sendall(message(subject=f"retry {i}") + b".\r\n")
                code, lines = c.reply()
                assert code == 250, lines
        finally:
            c.close()
        msgs = h.messages(2)
        assert [rcpts for rcpts, _ in msgs] == [[f"<{INTERNAL}>", "<boss@fabrikam.com>"]] * 2, msgs
        assert all(signature_of(raw) == INT_SIG for _, raw in msgs)
        assert len(h.events("open")) == 2 and "retrying on a new connection" in h.relay.stderr()
        assert h.deferred() == 2


@case
def deferrals_are_counted_and_logged():
    with Groups(**group_tenant()) as s:
        assert s.deferred() == 0
        with s.smtp() as c:
            assert c.sendmail(SENDER, [INTERNAL, EXTERNAL, "seller@example.org"], message()) == {
                EXTERNAL: (452, reply_452("external")), "seller@example.org": (452, reply_452("external"))}
            assert c.sendmail(SENDER, [EXTERNAL, "seller@example.org", INTERNAL], message()) == {
                INTERNAL: (452, reply_452("internal"))}
        s.exactly(2)
        assert s.deferred() == 3
        log = s.relay.stderr()
        assert split_log(EXTERNAL, "external", "internal") in log, log[-3000:]
        assert split_log("seller@example.org", "external", "internal") in log, log[-3000:]
        assert split_log(INTERNAL, "internal", "external") in log, log[-3000:]
        assert log.count("(split_recipients)") == 3, log[-3000:]


if __name__ == "__main__":
    harness.run(5)
