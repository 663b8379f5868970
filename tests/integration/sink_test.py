"""smarthost-sink against independent SMTP clients: Python's smtplib and ssl,
swaks, and raw sockets for pipelining and BDAT.

usage: sink_test.py SINK_BINARY CERTS_DIR [case ...]"""
import email.message
import email.policy
import glob
import json
import os
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

import harness
from harness import Process, case, free_port

SINK = os.path.abspath(sys.argv[1])
CERTS = os.path.abspath(sys.argv[2])
TENANT = "S5HG3DCG14.smtp.contososignatureservice.com"
SWAKS = shutil.which("swaks")


def cert(name):
    return os.path.join(CERTS, name)


def sink(port, *extra, save_dir=None, tls=True):
    argv = [SINK, "--listen", f"127.0.0.1:{port}", "--threads", "2"]
    if tls:
        argv += ["--tls-cert", cert("smarthost.pem"), "--tls-key", cert("smarthost.key")]
    if save_dir:
        argv += ["--save-dir", save_dir]
    return Process(argv + list(extra), port=port)


def client_context(client_cert=None):
    ctx = ssl.create_default_context(cafile=cert("ca.pem"))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if client_cert:
        ctx.load_cert_chain(cert(client_cert + ".pem"), cert(client_cert + ".key"))
    return ctx


def saved(save_dir, count, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        files = sorted(f for f in glob.glob(os.path.join(save_dir, "*.eml")))
        if len(files) >= count or time.monotonic() > deadline:
            return files
        time.sleep(0.05)


def crlf(text):
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


def make_message(i=0, size=0):
    m = email.message.EmailMessage(policy=email.policy.SMTP)
    m["From"] = "alice@fabrikam.com"
    m["To"] = "bob@example.net"
    m["Subject"] = f"test message {i}"
    m["Message-ID"] = f"<test-{i}-{time.time_ns()}@fabrikam.com>"
    body = f"Hello {i}.\n.leading dot line\n..two dots\n" + ("x" * 70 + "\n") * (size // 71)
    m.set_content(body)
    return m


class Reader:
    """Reads SMTP replies from a socket (or TLS socket)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def reply(self):
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                data = self.sock.recv(65536)
                if not data:
                    raise AssertionError(f"connection closed; got {lines!r}")
                self.buf += data
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode())
            if len(line) < 4 or line[3:4] != b"-":
                return lines


@case
def swaks_starttls_with_client_certificate_saves_exact_bytes():
    if not SWAKS:
        raise AssertionError("swaks is not installed (scripts/setup.sh installs it)")
    port = free_port()
    d = tempfile.mkdtemp()
    body = "Subject: swaks test\r\nFrom: alice@fabrikam.com\r\nTo: bob@example.net\r\n\r\nline one\r\n.dot line\r\nend\r\n"
    msgfile = os.path.join(d, "msg.eml")
    with open(msgfile, "wb") as f:
        # swaks ends the data with CRLF "." CRLF itself, so the file has no final line end
        f.write(body.encode()[:-2])
    save = os.path.join(d, "saved")
    with sink(port, "--require-client-cert", TENANT, "--client-ca", cert("ca.pem"), save_dir=save) as s:
        r = subprocess.run([SWAKS, "--server", "127.0.0.1", "--port", str(port), "--tls",
                            "--tls-ca-path", cert("ca.pem"), "--tls-verify",
                            "--tls-cert", cert("S5HG3DCG14.pem"), "--tls-key", cert("S5HG3DCG14.key"),
                            "--from", "alice@fabrikam.com", "--to", "bob@example.net",
                            "--data", msgfile, "--ehlo", "exo.test"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
        files = saved(save, 1)
        assert len(files) == 1, files
        got = open(files[0], "rb").read()
        assert got == body.encode(), (got, body)
        assert s.stop() == 0


@case
def swaks_wrong_client_certificate_name_is_refused():
    if not SWAKS:
        raise AssertionError("swaks is not installed")
    port = free_port()
    save = tempfile.mkdtemp()
    with sink(port, "--require-client-cert", TENANT, "--client-ca", cert("ca.pem"), save_dir=save) as s:
        for wrong in ("K7QW2PLM55", "rogue"):
            r = subprocess.run([SWAKS, "--server", "127.0.0.1", "--port", str(port), "--tls",
                                "--tls-cert", cert(wrong + ".pem"), "--tls-key", cert(wrong + ".key"),
                                "--from", "alice@fabrikam.com", "--to", "bob@example.net",
                                "--body", "should not arrive"],
                               capture_output=True, text=True, timeout=30)
            assert r.returncode != 0, f"{wrong} was accepted: {r.stdout}"
        # and without any certificate at all
        r = subprocess.run([SWAKS, "--server", "127.0.0.1", "--port", str(port), "--tls",
                            "--from", "alice@fabrikam.com", "--to", "bob@example.net", "--body", "x"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode != 0, "no client certificate was accepted"
        assert s.stop() == 0
    assert os.listdir(save) == [], os.listdir(save)


@case
def smtplib_require_client_cert_refuses_wrong_name():
    port = free_port()
    with sink(port, "--require-client-cert", TENANT, "--client-ca", cert("ca.pem")):
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
            c.ehlo("exo.test")
            try:
                c.starttls(context=client_context("K7QW2PLM55"))
                c.ehlo("exo.test")
                c.mail("alice@fabrikam.com")  # TLS 1.3: the refusal may arrive after the handshake
                raise AssertionError("wrong certificate name accepted")
            except (ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError, OSError):
                pass


@case
def smtplib_starttls_send_message_saved_file_equals_sent():
    port = free_port()
    save = tempfile.mkdtemp()
    with sink(port, "--require-client-cert", TENANT, "--client-ca", cert("ca.pem"), save_dir=save) as s:
        msgs = [make_message(i, size=i * 3000) for i in range(5)]
        with smtplib.SMTP("127.0.0.1", port, local_hostname="exo.test", timeout=10) as c:
            c.starttls(context=client_context("S5HG3DCG14"))
            for m in msgs:
                refused = c.send_message(m)
                assert refused == {}, refused
        files = saved(save, len(msgs))
        assert len(files) == len(msgs), files
        got = sorted(open(f, "rb").read() for f in files)
        want = sorted(m.as_bytes() for m in msgs)
        assert got == want
        assert s.stop() == 0


@case
def ehlo_advertises_the_extensions():
    port = free_port()
    with sink(port):
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
            code, _ = c.ehlo("exo.test")
            assert code == 250
            for ext in ("pipelining", "size", "8bitmime", "enhancedstatuscodes", "chunking", "smtputf8", "starttls"):
                assert c.has_extn(ext), (ext, c.esmtp_features)
            c.starttls(context=client_context())
            c.ehlo("exo.test")
            assert not c.has_extn("starttls"), "STARTTLS offered again after TLS"


def pipelined_transaction(tls_sock_reader, sock, n):
    msg = b"Subject: pipelined %d\r\n\r\nbody %d\r\n" % (n, n)
    sock.sendall(b"MAIL FROM:<alice@fabrikam.com>\r\nRCPT TO:<bob@example.net>\r\n"
                 b"RCPT TO:<carol@example.net>\r\nDATA\r\n")
    replies = [tls_sock_reader.reply() for _ in range(4)]
    assert [r[-1][:3] for r in replies] == ["250", "250", "250", "354"], replies
    sock.sendall(msg + b".\r\n")
    end = tls_sock_reader.reply()
    assert end[-1].startswith("250 2."), end
    return msg


@case
def raw_pipelined_transactions_over_tls():
    port = free_port()
    save = tempfile.mkdtemp()
    with sink(port, save_dir=save) as s:
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        r = Reader(raw)
        assert r.reply()[0].startswith("220")
        raw.sendall(b"EHLO exo.test\r\n")
        assert "250-PIPELINING" in r.reply()
        raw.sendall(b"STARTTLS\r\n")
        assert r.reply()[0].startswith("220 2.0.0")
        tls = client_context().wrap_socket(raw, server_hostname="fabrikam.mail.protection.outlook.com")
        r = Reader(tls)
        tls.sendall(b"EHLO exo.test\r\n")
        r.reply()
        sent = [pipelined_transaction(r, tls, n) for n in range(3)]
        tls.sendall(b"QUIT\r\n")
        assert r.reply()[0].startswith("221")
        tls.close()
        files = saved(save, 3)
        assert sorted(open(f, "rb").read() for f in files) == sorted(sent)
        assert s.stop() == 0


@case
def bdat_chunks_are_saved_byte_exact():
    port = free_port()
    save = tempfile.mkdtemp()
    with sink(port, save_dir=save, tls=False) as s:
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        r = Reader(raw)
        r.reply()
        raw.sendall(b"EHLO exo.test\r\n")
        assert "250-CHUNKING" in r.reply()
        # bare LF and a lone dot line: BDAT is length-delimited, so both pass byte-exact
        part1 = b"Subject: bdat\r\n\r\nline with bare LF\nand\r\n.\r\n"
        part2 = b"last chunk\r\n"
        raw.sendall(b"MAIL FROM:<alice@fabrikam.com>\r\nRCPT TO:<bob@example.net>\r\n"
                    + b"BDAT %d\r\n" % len(part1) + part1 + b"BDAT %d LAST\r\n" % len(part2) + part2)
        replies = [r.reply()[-1] for _ in range(4)]
        assert [x[:3] for x in replies] == ["250", "250", "250", "250"], replies
        raw.sendall(b"QUIT\r\n")
        r.reply()
        files = saved(save, 1)
        assert [open(f, "rb").read() for f in files] == [part1 + part2]
        assert s.stop() == 0


@case
def require_tls_rejects_mail_before_starttls():
    port = free_port()
    with sink(port, "--require-client-cert", TENANT, "--client-ca", cert("ca.pem")):
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
            c.ehlo("exo.test")
            code, text = c.mail("alice@fabrikam.com")
            assert code == 530 and text.startswith(b"5.7.0"), (code, text)


@case
def thousand_messages_over_fifty_connections_all_arrive():
    port = free_port()
    save = tempfile.mkdtemp()
    with sink(port, "--require-client-cert", TENANT, "--client-ca", cert("ca.pem"), "--quiet",
              save_dir=save) as s:
        errors = []
        ctx = client_context("S5HG3DCG14")

        def worker(w):
            try:
                with smtplib.SMTP("127.0.0.1", port, local_hostname="exo.test", timeout=30) as c:
                    c.starttls(context=ctx)
                    for i in range(20):
                        m = make_message(w * 1000 + i, size=(i % 5) * 2000)
                        c.send_message(m)
            except Exception as e:  # noqa: BLE001 - collected and reported
                errors.append(f"worker {w}: {e!r}")

        threads = [threading.Thread(target=worker, args=(w,)) for w in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors, errors[:5]
        files = saved(save, 1000, timeout=30)
        assert len(files) == 1000, len(files)
        ids = set()
        for f in files:
            with open(f, "rb") as fh:
                for line in fh:
                    if line.lower().startswith(b"message-id:"):
                        ids.add(line)
                        break
        assert len(ids) == 1000, len(ids)
        assert s.stop() == 0


@case
def fail_rate_answers_with_fail_code_and_json_counts():
    port = free_port()
    with sink(port, "--fail-rate", "1", "--fail-code", "451", "--json", tls=False) as s:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
            try:
                c.sendmail("alice@fabrikam.com", ["bob@example.net"], b"Subject: x\r\n\r\ny\r\n")
                raise AssertionError("accepted despite --fail-rate 1")
            except smtplib.SMTPDataError as e:
                assert e.smtp_code == 451 and e.smtp_error.startswith(b"4.3.0"), e
        assert s.stop() == 0
        counts = json.loads(s.stdout().strip().splitlines()[-1])
        assert counts["messages"] == 1 and counts["failed"] == 1 and counts["accepted"] == 0, counts


@case
def sigterm_drains_a_transaction_in_flight():
    port = free_port()
    save = tempfile.mkdtemp()
    with sink(port, "--delay-ms", "1500", tls=False, save_dir=save) as s:
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        r = Reader(raw)
        r.reply()
        raw.sendall(b"EHLO exo.test\r\n")
        r.reply()
        raw.sendall(b"MAIL FROM:<a@fabrikam.com>\r\n")
        r.reply()
        raw.sendall(b"RCPT TO:<b@example.net>\r\n")
        r.reply()
        raw.sendall(b"DATA\r\n")
        assert r.reply()[0].startswith("354")
        raw.sendall(b"Subject: drain\r\n\r\nbody\r\n.\r\n")
        time.sleep(0.3)
        s.proc.send_signal(15)
        end = r.reply()
        assert end[0].startswith("250"), end
        # then the session is told the service is going away
        rest = r.reply()
        assert rest[0].startswith("421 4.3.2"), rest
        assert s.stop() == 0
        assert len(saved(save, 1)) == 1


@case
def refuses_garbage_and_stays_up():
    port = free_port()
    with sink(port, tls=False) as s:
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        r = Reader(raw)
        r.reply()
        raw.sendall(b"X" * 5000 + b"\r\nNOOP\r\n")
        first = r.reply()
        assert first[0].startswith("500 5.5.2"), first
        assert r.reply()[0].startswith("250 2.0.0")
        raw.close()
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
            assert c.noop()[0] == 250
        assert s.stop() == 0


def raw_session(port):
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    r = Reader(raw)
    return raw, r


@case
def allow_cidr_refuses_other_peers_with_554():
    port = free_port()
    with sink(port, "--allow-cidr", "10.0.0.0/8", "--allow-cidr", "2a01:111:f400::/48", tls=False) as s:
        raw, r = raw_session(port)
        first = r.reply()
        assert first[0].startswith("554 5.7.1"), first
        assert raw.recv(100) == b"", "connection stayed open after 554"
        assert "not in --allow-cidr" in s.stderr()
    with Process([SINK, "--listen", f"127.0.0.1:{port}", "--allow-cidr", "127.0.0.0/8"], port=port):
        raw, r = raw_session(port)
        assert r.reply()[0].startswith("220")


@case
def connection_limits_answer_421_470():
    port = free_port()
    with sink(port, "--max-connections-per-ip", "2", tls=False):
        time.sleep(0.3)  # the start-up probe's connection must be gone from the count
        socks = []
        for _ in range(2):
            raw, r = raw_session(port)
            assert r.reply()[0].startswith("220")
            socks.append(raw)
        raw, r = raw_session(port)
        third = r.reply()
        assert third[0].startswith("421 4.7.0"), third
        socks[0].close()
        time.sleep(0.3)
        raw, r = raw_session(port)
        assert r.reply()[0].startswith("220"), "slot not released after a close"
    port = free_port()
    with Process([SINK, "--listen", f"127.0.0.1:{port}", "--threads", "1", "--max-connections", "3"]):
        harness.wait_for_banner(port)
        time.sleep(0.2)
        socks = []
        for _ in range(3):
            raw, r = raw_session(port)
            assert r.reply()[0].startswith("220")
            socks.append(raw)
        raw, r = raw_session(port)
        assert r.reply()[0].startswith("421 4.7.0")


@case
def command_timeout_closes_with_421_442():
    port = free_port()
    with sink(port, "--command-timeout", "1", tls=False):
        raw, r = raw_session(port)
        r.reply()
        t0 = time.monotonic()
        got = r.reply()
        assert got[0].startswith("421 4.4.2"), got
        assert time.monotonic() - t0 < 8
        assert raw.recv(100) == b""


@case
def min_data_rate_drops_a_trickling_client():
    port = free_port()
    with sink(port, "--min-data-rate", "1000", tls=False):
        raw, r = raw_session(port)
        r.reply()
        raw.sendall(b"EHLO slow.test\r\n")
        r.reply()
        for cmd in (b"MAIL FROM:<a@fabrikam.com>\r\n", b"RCPT TO:<b@example.net>\r\n", b"DATA\r\n"):
            raw.sendall(cmd)
            r.reply()
        deadline = time.monotonic() + 15
        raw.settimeout(1)
        got = None
        while time.monotonic() < deadline and got is None:
            try:
                raw.sendall(b"x")
            except OSError:
                break
            try:
                data = raw.recv(4096)
                got = data
            except socket.timeout:
                continue
        assert got and got.startswith(b"421 4.4.2"), got


@case
def smuggled_end_of_data_yields_one_message():
    """SMTP smuggling (CVE-2023-51764 family): a bare-LF dot line must not end
    the message, so the smuggled second transaction never becomes mail."""
    for policy, expect_first in (("reject", "550 5.6.0"), ("normalize", "250")):
        port = free_port()
        save = tempfile.mkdtemp()
        with sink(port, "--bare-newline", policy, tls=False, save_dir=save):
            raw, r = raw_session(port)
            r.reply()
            raw.sendall(b"EHLO exo.test\r\n")
            r.reply()
            for cmd in (b"MAIL FROM:<a@fabrikam.com>\r\n", b"RCPT TO:<b@example.net>\r\n", b"DATA\r\n"):
                raw.sendall(cmd)
                r.reply()
            raw.sendall(b"Subject: first\r\n\r\nhello\n.\nMAIL FROM:<evil@example.com>\r\n"
                        b"RCPT TO:<victim@example.net>\r\nDATA\r\nSubject: smuggled\r\n\r\nowned\r\n.\r\n")
            end = r.reply()
            assert end[0].startswith(expect_first), (policy, end)
            raw.sendall(b"QUIT\r\n")
            r.reply()
            files = saved(save, 1, timeout=2)
            if policy == "reject":
                assert files == [], files
            else:
                assert len(files) == 1, files
                body = open(files[0], "rb").read()
                # the would-be second transaction is only content of the first
                assert b"MAIL FROM:<evil@example.com>" in body and b"smuggled" in body, body
                assert b"\n" not in body.replace(b"\r\n", b""), "bare LF passed on"


if __name__ == "__main__":
    harness.run(2)
