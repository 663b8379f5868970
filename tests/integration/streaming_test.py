"""sigrelay's streaming data plane end to end: large messages byte-exact through
the relay, messages abandoned before their end never delivered, a smart host
dying mid-stream, pipelined recipient groups, and a client that never reads.

Clients: smtp-blaster and raw sockets over STARTTLS (what they send is exactly
what goes on the wire). Smart hosts: smarthost-sink, and a small Python smart
host of this file's own (PyHost) where the sink cannot do what a case needs
(refuse some recipients, die after N bytes of a message).

SIGRELAY_TEST_SCALE (float, default 1.0) shrinks the big sizes; the counts stay.

usage: streaming_test.py SIGRELAY SINK BLASTER CERTS_DIR EXAMPLES_DIR [case ...]"""
import base64
import glob
import hashlib
import json
import os
import random
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time

import harness
from harness import case, free_port

with harness.helpers_only():
    import relay_test as rt  # Setup, tenants_file, start_relay, cert(): same argv

from relay_test import BLASTER, RELAY_NAME, cert

MiB = 1 << 20
SCALE = float(os.environ.get("SIGRELAY_TEST_SCALE") or "1.0")
SENDER = "jane.doe@fabrikam.com"
PROCESSED = b"SignatureContoso: true\r\n"


def scaled(n):
    return max(int(n * SCALE), 256 * 1024)


# A part over --max-signed-part (8 MiB) is relayed stamped, unsigned. When the
# sizes are scaled down, the cap is scaled with them so that cases 2 and 3
# still exceed it; at scale 1 the relay runs with its defaults.
RELAY_FLAGS = () if SCALE >= 1 else ("--max-signed-part", str(int(8 * MiB * SCALE)))


# --- processes -------------------------------------------------------------

def stopped_cleanly(relay):
    """After a case: SIGTERM drains and exits 0 (a sanitizer's report would not)."""
    rc = relay.stop()
    assert rc == 0, f"sigrelay exited {rc} on SIGTERM:\n{relay.stderr()[-4000:]}"


class Relay(rt.Setup):
    """relay_test's Setup (sink + relay), which also removes its files on exit:
    the saved messages of these cases are large."""

    def __init__(self, sink_extra=(), relay_extra=(), **kw):
        super().__init__(sink_extra=tuple(sink_extra), relay_extra=tuple(RELAY_FLAGS) + tuple(relay_extra), **kw)

    def __exit__(self, exc_type, *exc):
        try:
            if exc_type is None:
                stopped_cleanly(self.relay)
        finally:
            self.relay.__exit__()
            self.sink.__exit__()
            shutil.rmtree(self.dir, ignore_errors=True)

    def files(self):
        """Every file in the save dir, the sink's hidden temporary ones included."""
        return sorted(os.listdir(self.save)) if os.path.isdir(self.save) else []

    def eml(self, count, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            files = sorted(glob.glob(os.path.join(self.save, "*.eml")))
            if len(files) >= count or time.monotonic() > deadline:
                return files
            time.sleep(0.05)

    def sink_counters(self):
        """Stops the sink; its --json counters."""
        assert self.sink.stop() == 0, self.sink.stderr()
        return json.loads(self.sink.stdout().strip().splitlines()[-1])

    def logs(self):
        return f"\n--- relay stderr (tail) ---\n{self.relay.stderr()[-3000:]}" \
               f"\n--- sink stderr (tail) ---\n{self.sink.stderr()[-1500:]}"


class RelayTo:
    """A relay whose tenant fabrikam's smart host is a PyHost."""

    def __init__(self, host, relay_extra=()):
        self.dir = tempfile.mkdtemp(prefix="sigrelay-stream-")
        self.relay_port = free_port()
        tenants = rt.tenants_file(self.dir, host.port)
        self.relay = rt.start_relay(self.relay_port, tenants, *RELAY_FLAGS, *relay_extra)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        try:
            if exc_type is None:
                stopped_cleanly(self.relay)
        finally:
            self.relay.__exit__()
            shutil.rmtree(self.dir, ignore_errors=True)

    def logs(self):
        return f"\n--- relay stderr (tail) ---\n{self.relay.stderr()[-3000:]}"


def blast(port, corpus, count, chunking):
    argv = [BLASTER, "--target", f"127.0.0.1:{port}", "--connections", str(count), "--messages", str(count),
            "--corpus", corpus, "--from", SENDER, "--starttls", "--ca", cert("ca.pem"),
            "--tls-name", RELAY_NAME, "--helo", "exo.test", "--json"] + (["--chunking"] if chunking else [])
    r = subprocess.run(argv, capture_output=True, text=True, timeout=400)
    try:
        out = json.loads(r.stdout)
    except ValueError:
        raise AssertionError(f"smtp-blaster: {r.returncode} {r.stdout} {r.stderr}")
    return r.returncode, out, r.stderr


# --- an SMTP client on a raw socket ----------------------------------------

class Client:
    """EHLO, STARTTLS, EHLO on a raw socket; then bytes go out exactly as given."""

    def __init__(self, port, tls=True, timeout=60, rcvbuf=None):
        self.raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.raw.settimeout(timeout)
        self.raw.connect(("127.0.0.1", port))
        self.sock, self.buf = self.raw, b""
        code, lines = self.reply()
        assert code == 220, lines
        self.ehlo = self.cmd(b"EHLO exo.test")
        if tls:
            code, lines = self.cmd(b"STARTTLS")
            assert code == 220 and not self.buf, lines
            ctx = ssl.create_default_context(cafile=cert("ca.pem"))
            self.sock = ctx.wrap_socket(self.raw, server_hostname=RELAY_NAME)
            self.ehlo = self.cmd(b"EHLO exo.test")
        assert self.ehlo[0] == 250, self.ehlo

    def send(self, data):
        self.sock.sendall(data)

    def reply(self):
        """(code, [lines]) of one reply, multi-line ones whole."""
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
        self.send(line + b"\r\n")
        return self.reply()

    def envelope(self, rcpts=("bob@example.net",)):
        code, lines = self.cmd(b"MAIL FROM:<%s>" % SENDER.encode())
        assert code == 250, lines
        for r in rcpts:
            code, lines = self.cmd(b"RCPT TO:<%s>" % r.encode())
            assert code == 250, lines

    def data(self, message, pieces=4 * MiB):
        """DATA with the message dot-stuffed here; the final reply."""
        code, lines = self.cmd(b"DATA")
        assert code == 354, lines
        self.send_pieces(dot_stuff(message) + b".\r\n", pieces)
        return self.reply()

    def send_pieces(self, data, pieces):
        view = memoryview(data)
        for off in range(0, len(view), pieces):
            self.send(view[off:off + pieces])

    def bdat(self, message, sizes=(MiB,), last=True):
        """BDAT chunks of the given sizes (cycled), each reply read before the next
        chunk; then BDAT 0 LAST (unless not `last`). Returns (replies to the
        non-final chunks, final reply or None)."""
        view, off, i, replies = memoryview(message), 0, 0, []
        while off < len(view):
            n = min(sizes[i % len(sizes)], len(view) - off)
            self.send(b"BDAT %d\r\n" % n)
            self.send(view[off:off + n])
            off, i = off + n, i + 1
            r = self.reply()
            replies.append(r)
            if r[0] != 250:
                return replies, r
        return replies, self.cmd(b"BDAT 0 LAST") if last else None

    def close(self, reset=False):
        if reset:  # RST instead of FIN
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.sock.close()  # the TLS socket owns the descriptor now, without close_notify
        self.raw.close()


def dot_stuff(content):
    assert content.endswith(b"\r\n")
    return (b"\r\n" + content).replace(b"\r\n.", b"\r\n..")[2:]


# --- a small smart host of our own -----------------------------------------

class PyHost:
    """A smart host over STARTTLS with the test certificates (the tenant's client
    certificate is asked for, optional), for what smarthost-sink cannot do:

    - rcpt(address) -> reply line: its answer to each RCPT;
    - die_after=N: connection number 1 (the first) closes with a RST once it has
      received N octets of message content; later connections are healthy;
    - hold_rcpts=N: after MAIL, read until N RCPTs are in (or 5 s passed) before
      answering any of them, which only works with a client that pipelines.

    Each accepted message is kept in `messages`; every command in `commands`."""

    def __init__(self, chunking=True, rcpt=None, die_after=None, hold_rcpts=0):
        self.chunking, self.rcpt_policy = chunking, rcpt
        self.die_after, self.hold_rcpts = die_after, hold_rcpts
        self.messages, self.commands, self.errors, self.died, self.groups = [], [], [], [], []
        self.connections = 0
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self.ctx.load_cert_chain(cert("smarthost.pem"), cert("smarthost.key"))
        self.ctx.load_verify_locations(cert("ca.pem"))
        self.ctx.verify_mode = ssl.CERT_OPTIONAL
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.port = free_port()
        self.lsock.bind(("127.0.0.1", self.port))
        self.lsock.listen(64)
        self.lock = threading.Lock()
        self.threads = []
        self.closing = False
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.closing = True
        self.lsock.close()

    def check(self):
        assert not self.errors, f"PyHost: {self.errors}"

    def _accept(self):
        while not self.closing:
            try:
                conn, _ = self.lsock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                n = self.connections
            t = threading.Thread(target=self._serve_guarded, args=(conn, n), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve_guarded(self, conn, n):
        try:
            conn.settimeout(120)
            self._serve(conn, n)
        except (ConnectionError, ssl.SSLError, socket.timeout, OSError) as e:
            self.commands.append((n, f"connection ended: {e!r}"))
        except Exception as e:  # a bug in the test: report it
            self.errors.append(repr(e))
        finally:
            conn.close()

    def _serve(self, sock, n):
        st = {"sock": sock, "buf": bytearray(), "got": 0, "tls": False}

        def fill():
            data = st["sock"].recv(1 << 20)
            if not data:
                raise ConnectionError("peer closed")
            st["buf"] += data

        def line():
            while True:
                i = st["buf"].find(b"\r\n")
                if i >= 0:
                    out = bytes(st["buf"][:i])
                    del st["buf"][:i + 2]
                    return out
                fill()

        def send(text):
            st["sock"].sendall(text.encode() if isinstance(text, str) else text)

        def content(nbytes):
            st["got"] += nbytes
            if self.die_after is not None and n == 1 and st["got"] >= self.die_after:
                self.died.append(st["got"])
                st["sock"].setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                raise ConnectionAbortedError(f"died after {st['got']} octets, as asked")

        def rcpt_reply(cmd):
            addr = cmd.split(b":", 1)[1].strip()
            return self.rcpt_policy(addr.decode()) if self.rcpt_policy else "250 2.1.5 Recipient OK"

        send("220 fabrikam.mail.protection.outlook.com ESMTP pyhost\r\n")
        env = None
        while True:
            cmd = line()
            self.commands.append((n, cmd[:80]))
            verb = cmd[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                keys = ["PIPELINING", "SIZE 524288000", "8BITMIME", "ENHANCEDSTATUSCODES"]
                keys += ["CHUNKING"] if self.chunking else []
                keys += [] if st["tls"] else ["STARTTLS"]
                send("".join(f"250-{k}\r\n" for k in ["fabrikam.mail.protection.outlook.com"] + keys[:-1])
                     + f"250 {keys[-1]}\r\n")
            elif verb == b"STAR":
                send("220 2.0.0 SMTP server ready\r\n")
                assert not st["buf"], "plaintext behind STARTTLS"
                st["sock"] = self.ctx.wrap_socket(st["sock"], server_side=True)
                st["tls"] = True
            elif verb == b"MAIL":
                env = {"conn": n, "from": cmd, "rcpts": [], "content": bytearray()}
                if not self.hold_rcpts:
                    send("250 2.1.0 Sender OK\r\n")
                    continue
                # read the pipelined group before answering any of it
                held, deadline = [], time.monotonic() + 5
                st["sock"].settimeout(0.2)
                while len(held) < self.hold_rcpts and time.monotonic() < deadline:
                    try:
                        held.append(line())
                    except socket.timeout:
                        pass
                st["sock"].settimeout(120)
                self.groups.append(len(held))
                out = "250 2.1.0 Sender OK\r\n"
                for c in held:
                    self.commands.append((n, c[:80]))
                    assert c[:4].upper() == b"RCPT", c
                    env["rcpts"].append(c)
                    out += rcpt_reply(c) + "\r\n"
                send(out)
            elif verb == b"RCPT":
                env["rcpts"].append(cmd)
                send(rcpt_reply(cmd) + "\r\n")
            elif verb == b"DATA":
                send("354 Start mail input; end with <CRLF>.<CRLF>\r\n")
                st["buf"][0:0] = b"\r\n"  # the CRLF that ended DATA starts the end marker
                scanned = 2
                while True:
                    i = st["buf"].find(b"\r\n.\r\n", max(0, scanned - 4))
                    if i >= 0:
                        break
                    content(len(st["buf"]) - scanned)  # counted once each, as it is looked at
                    scanned = len(st["buf"])
                    fill()
                body = bytes(st["buf"][2:i + 2]).replace(b"\r\n..", b"\r\n.")
                if body.startswith(b".."):
                    body = body[1:]
                del st["buf"][:i + 5]
                self._deliver(env, body, "DATA", send)
            elif verb == b"BDAT":
                parts = cmd.split()
                size, last = int(parts[1]), len(parts) > 2 and parts[2].upper() == b"LAST"
                while len(st["buf"]) < size:
                    fill()
                content(size)
                env["content"] += st["buf"][:size]
                del st["buf"][:size]
                if last:
                    self._deliver(env, bytes(env["content"]), "BDAT", send)
                else:
                    send(f"250 2.0.0 {size} octets received\r\n")
            elif verb == b"RSET":
                env = None
                send("250 2.0.0 Resetting\r\n")
            elif verb == b"NOOP":
                send("250 2.0.0 OK\r\n")
            elif verb == b"QUIT":
                send("221 2.0.0 Bye\r\n")
                return
            else:
                send("500 5.5.2 Unrecognized command\r\n")

    def _deliver(self, env, body, how, send):
        with self.lock:
            env["content"], env["how"] = body, how
            self.messages.append(env)
            k = len(self.messages)
        send(f"250 2.0.0 OK queued as py-{env['conn']}-{k}\r\n")


# --- messages ---------------------------------------------------------------

def _text_block(seed, size):
    """CRLF text lines (at most 200 octets) with many leading dots, lines of just
    ".", and empty lines: what DATA's dot-stuffing must get right."""
    rnd = random.Random(seed)
    words = [b".", b"..", b".x", b"...dots", b"fox", b"jumps", b"over", b"the", b"lazy", b"dog", b"0123456789"]
    out, n = [], 0
    while n < size:
        k = rnd.randrange(8)
        if k == 0:
            ln = b"."
        elif k == 1:
            ln = b""
        else:
            ln = b" ".join(rnd.choice(words) for _ in range(rnd.randrange(1, 30)))
        out.append(ln + b"\r\n")
        n += len(ln) + 2
    return b"".join(out)


_BLOCK = _text_block(1, MiB)


def text_body(tag, size):
    """`size` octets (about) of text, every MiB headed by a line naming `tag` and
    the MiB's number, so a piece of one message in another, or out of place,
    shows."""
    segs = []
    for k in range(max(1, size // MiB)):
        segs.append(b"%s segment %d\r\n" % (tag, k))
        segs.append(_BLOCK)
    return b"".join(segs)


def header_block(subject, ctype, extra=b""):
    return (b"From: Jane Doe <jane.doe@fabrikam.com>\r\nTo: Bob <bob@example.net>\r\n"
            b"Subject: " + subject + b"\r\nMessage-ID: <" + re.sub(rb"[^a-z0-9]", b"-", subject.lower()) +
            b"@fabrikam.com>\r\nDate: Mon, 01 Dec 2025 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: " + ctype + b"\r\n" + extra + b"\r\n")


def text_message(tag, size):
    """A single-part text/plain message; (message, header block, body)."""
    head = header_block(tag, b"text/plain; charset=us-ascii", b"Content-Transfer-Encoding: 7bit\r\n")
    body = text_body(tag, size)
    return head + body, head, body


_ATTACHMENT = {}


def attachment_lines(size):
    """Base64 of deterministic random octets, 76 characters and CRLF a line, all
    lines full (no padding), so any rotation by whole lines is valid base64."""
    if size not in _ATTACHMENT:
        nlines = max(1, size // 78)
        raw = random.Random(64).randbytes(nlines * 57)
        b64 = base64.encodebytes(raw).replace(b"\n", b"\r\n")
        assert len(b64) == nlines * 78
        _ATTACHMENT[size] = b64
    return _ATTACHMENT[size]


def attachment_message(i, size, dots=MiB // 4):
    """multipart/mixed: a multipart/alternative (text + HTML, both signed), a
    base64 attachment of `size` octets (rotated by i lines, so each message's is
    its own), and a text attachment full of dot lines. Returns (message, tail):
    tail is everything from the attachment's delimiter on, which must reach the
    smart host byte for byte."""
    b = b"=_mixed_%d" % i
    a = b"=_alt_%d" % i
    lines = attachment_lines(size)
    rot = (i * 1009 % (len(lines) // 78)) * 78
    head = header_block(b"streaming attachment %d" % i, b'multipart/mixed; boundary="' + b + b'"')
    first = (b"This is a multi-part message in MIME format.\r\n\r\n--" + b + b"\r\n"
             b'Content-Type: multipart/alternative; boundary="' + a + b'"\r\n\r\n'
             b"--" + a + b"\r\nContent-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
             + b"Hi Bob,\r\n\r\nmessage %d: the numbers are attached.\r\n.a line that starts with a dot\r\n\r\n" % i
             + b"--" + a + b"\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n"
             + b"<html><body><p>Hi Bob,</p><p>message %d: the numbers are attached.</p></body></html>\r\n" % i
             + b"--" + a + b"--\r\n")
    tail = [b"\r\n--" + b + b'\r\nContent-Type: application/octet-stream; name="numbers-%d.bin"\r\n' % i
            + b'Content-Disposition: attachment; filename="numbers-%d.bin"\r\n' % i
            + b"Content-Transfer-Encoding: base64\r\n\r\n",
            memoryview(lines)[rot:], memoryview(lines)[:rot],
            b"\r\n--" + b + b'\r\nContent-Type: text/plain; charset=us-ascii\r\n'
            + b'Content-Disposition: attachment; filename="dots-%d.txt"\r\n\r\n' % i,
            text_body(b"dots %d" % i, dots), b"\r\n--" + b + b"--\r\n"]
    message = b"".join([head, first] + tail)
    return message, Tail(message, len(head) + len(first))


class Tail:
    """What must arrive unchanged: the octets of `message` from `start` on."""

    def __init__(self, message, start):
        view = memoryview(message)[start:]
        self.size, self.sha256, self.lead = len(view), hashlib.sha256(view).hexdigest(), bytes(view[:200])


MARKER = re.compile(rb'<div class="sigrelay-([0-9a-f]{16})" data-sigrelay="\1">')


def split_received(saved):
    """The relay adds Received: on top and the processed header at the end of the
    top-level header block (and asserts both are there). Returns the header block
    without them, which must be the one sent, and the offset of the body in
    `saved`, from which on the octets must be the ones sent."""
    assert saved[:25] == b"Received: from exo.test (", bytes(saved[:200])
    i = 0
    while True:
        i = saved.index(b"\r\n", i) + 2
        if saved[i:i + 1] not in (b" ", b"\t"):
            break
    end = saved.index(b"\r\n\r\n", i) + 2
    head = bytes(saved[i:end])
    assert head.endswith(PROCESSED) and head.count(b"\r\nSignatureContoso:") == 1, head[-300:]
    return head[:-len(PROCESSED)] + b"\r\n", end + 2


def check_signed_attachment(saved, i, sent, tail):
    """`saved` is message i signed for Jane Doe (text and HTML), with its header
    block unchanged but for our two fields, and every octet from the
    attachment's delimiter on identical to what was sent."""
    head, body = split_received(saved)
    sent_body = sent.index(b"\r\n\r\n") + 4
    assert head == sent[:sent_body], (head, sent[:sent_body])
    cut = saved.find(tail.lead, body, body + 4 * MiB)
    assert cut > 0, f"message {i}: the attachment's delimiter is not there"
    got = hashlib.sha256(memoryview(saved)[cut:]).hexdigest()
    assert got == tail.sha256 and len(saved) - cut == tail.size, \
        f"message {i}: the attachment part differs ({len(saved) - cut} octets, {tail.size} sent)"
    signed = saved[body:cut].decode("ascii")
    text_at = signed.index("message %d: the numbers are attached.\r\n.a line that starts with a dot\r\n" % i)
    html_at = signed.index("Content-Type: text/html")
    assert signed[:text_at] == sent[sent_body:sent.index(b"message %d: " % i)].decode(), signed[:text_at]
    text, html = signed[text_at:html_at], signed[html_at:]
    assert "Jane Doe\r\nChief Executive Officer, Management\r\n" in text, f"message {i}: text not signed: {text}"
    assert "Tel. +1 425 555 0100" in text and text.count("Jane Doe") == 1, text
    m = MARKER.search(html.encode())
    assert m and html.count("Jane Doe") == 1, f"message {i}: HTML not signed: {html}"
    assert html.index("message %d: the numbers" % i) < m.start() < html.index("</body>"), html


def concurrently(fn, n, timeout=300):
    """fn(0) … fn(n-1) on threads at once; their results, or the first failure."""
    results, errors = [None] * n, []

    def run(i):
        try:
            results[i] = fn(i)
        except BaseException as e:  # reported below, with its index
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


def read(path):
    with open(path, "rb") as f:
        return f.read()


def send_message(port, message, bdat, sizes=(MiB + 1, 65537, 3 * MiB - 3, 2, 1)):
    """One transaction on its own connection; the final reply. BDAT in chunks of
    `sizes` (cycled, so chunk ends fall inside lines and CRLFs), or DATA sent in
    pieces of odd sizes."""
    c = Client(port)
    try:
        c.envelope()
        if bdat:
            return c.bdat(message, sizes)[1]
        return c.data(message, pieces=MiB + 7)
    finally:
        c.close()


# --- 1. large attachments, many at once -------------------------------------

@case
def concurrent_64mib_attachments_signed_and_byte_exact():
    count, size = 16, scaled(64 * MiB)
    messages = [attachment_message(i, size) for i in range(count)]
    for client_bdat, sink_chunking in ((True, True), (False, False), (True, False), (False, True)):
        label = f"client {'BDAT' if client_bdat else 'DATA'} -> sink {'BDAT' if sink_chunking else 'DATA'}"
        t0 = time.monotonic()
        sink_extra = ("--threads", "2") + (() if sink_chunking else ("--no-chunking",))
        with Relay(sink_extra=sink_extra, relay_extra=("--quiet",)) as s:
            replies = concurrently(lambda i: send_message(s.relay_port, messages[i][0], client_bdat), count)
            for i, (code, lines) in enumerate(replies):
                assert code == 250 and b"queued as sink-" in lines[-1], (label, i, lines, s.logs())
            files = s.eml(count)
            assert len(files) == count, (label, files)
            seen = set()
            for path in files:
                saved = read(path)
                os.unlink(path)
                i = int(re.search(rb"\r\nSubject: streaming attachment (\d+)\r\n", saved[:4096]).group(1))
                assert i not in seen, f"{label}: message {i} twice"
                seen.add(i)
                check_signed_attachment(saved, i, *messages[i])
            c = s.sink_counters()
            assert c["accepted"] == count and c["messages"] == count, (label, c)
        print(f"     {label}: {count} x {size / MiB:.0f} MiB in {time.monotonic() - t0:.1f}s", flush=True)


# --- 2. large single-part messages: stamped, not signed --------------------

def check_stamped(saved, sent):
    """`saved` is `sent` with only Received: and the processed header added."""
    head, body = split_received(saved)
    sent_body = sent.index(b"\r\n\r\n") + 4
    assert head == sent[:sent_body], (head, sent[:sent_body])
    assert len(saved) - body == len(sent) - sent_body, \
        f"body of {len(saved) - body} octets, {len(sent) - sent_body} sent"
    got = hashlib.sha256(memoryview(saved)[body:]).hexdigest()
    assert got == hashlib.sha256(memoryview(sent)[sent_body:]).hexdigest(), "the body differs"


@case
def concurrent_48mib_text_messages_stamped_unsigned_byte_exact():
    count, size = 8, scaled(48 * MiB)
    corpus = tempfile.mkdtemp(prefix="sigrelay-corpus-")
    try:
        sent = {}
        for i in range(count):
            m, _, _ = text_message(b"plain text %d" % i, size)
            sent[i] = m
            with open(os.path.join(corpus, "t%d.eml" % i), "wb") as f:
                f.write(m)
        with Relay(sink_extra=("--threads", "2")) as s:
            rc, out, err = blast(s.relay_port, corpus, count, chunking=False)  # DATA, stuffed by the blaster
            assert rc == 0 and out["accepted"] == count and out["replies"] == {"250": count}, (out, err, s.logs())
            files = s.eml(count)
            assert len(files) == count, files
            seen = set()
            for path in files:
                saved = read(path)
                os.unlink(path)
                i = int(re.search(rb"\r\nSubject: plain text (\d+)\r\n", saved[:4096]).group(1))
                assert i not in seen, f"message {i} twice"
                seen.add(i)
                check_stamped(saved, sent[i])  # byte-exact body: no signature in it
            log = s.relay.stderr()
            assert log.count(" stamped (") == count and " signed (" not in log, log[-3000:]
    finally:
        shutil.rmtree(corpus, ignore_errors=True)


# --- 3. one message at the size limit ---------------------------------------

def exact_text_message(tag, total):
    """A text/plain message of exactly `total` octets."""
    m, head, body = text_message(tag, total + MiB)
    body = body[:total - len(head) - 2]
    if body.endswith(b"\r"):
        body = body[:-1] + b"x"
    m = head + body + b"\r\n"
    assert len(m) == total
    return m


@case
def one_150mib_message_byte_exact():
    total = int(150 * MiB * SCALE)  # the relay's default --max-message-size at scale 1
    m = exact_text_message(b"the whole limit", total)
    # The sink's limit is the same 150 MiB, and our two header fields make the
    # message larger than that: the sink gets room for them.
    with Relay(sink_extra=("--no-chunking", "--max-message-size", str(200 * MiB))) as s:
        code, lines = send_message(s.relay_port, m, bdat=True, sizes=(4 * MiB + 1, 1, 65535, 16 * MiB - 1))
        assert code == 250, (lines, s.logs())
        [path] = s.eml(1)
        check_stamped(read(path), m)
        os.unlink(path)


# --- 4. the client goes away in the middle of its message -------------------

@case
def client_disconnect_mid_message_delivers_nothing():
    size = scaled(24 * MiB)
    for client_bdat in (False, True):
        for sink_chunking in (True, False):
            label = f"client {'BDAT' if client_bdat else 'DATA'} -> sink {'BDAT' if sink_chunking else 'DATA'}"
            m, _ = attachment_message(100, size)
            half = len(m) // 2
            with Relay(sink_extra=() if sink_chunking else ("--no-chunking",)) as s:
                c = Client(s.relay_port)
                c.envelope()
                if client_bdat:
                    replies, _ = c.bdat(m[:half], sizes=(half // 8 + 1,), last=False)  # 8 chunks, no LAST
                    assert len(replies) > 4 and all(r[0] == 250 for r in replies), replies
                else:
                    code, lines = c.cmd(b"DATA")
                    assert code == 354, lines
                    c.send_pieces(dot_stuff(m)[:half], MiB)
                time.sleep(0.3)  # let the relay pass on what it has
                c.close(reset=client_bdat)  # a RST mid-BDAT, a FIN mid-DATA
                time.sleep(1)
                assert s.files() == [], (label, s.files(), s.logs())
                # the relay goes on serving
                follow, tail = attachment_message(101, 64 * 1024)
                code, lines = send_message(s.relay_port, follow, bdat=client_bdat)
                assert code == 250, (label, lines, s.logs())
                files = s.eml(1)
                assert len(files) == 1 and s.files() == [os.path.basename(files[0])], (label, s.files())
                check_signed_attachment(read(files[0]), 101, follow, tail)
                c = s.sink_counters()
                assert c["messages"] == 1 and c["accepted"] == 1 and c["saved"] == 1, (label, c)
                # the abandoned message was on its way: the sink had part of it
                assert c["bytes"] > half // 4, (label, c, "the relay did not stream the message")


# --- 5. the smart host dies in the middle of a message ----------------------

@case
def smart_host_dying_mid_stream_gives_4yz_and_the_connection_goes_on():
    size, die = scaled(16 * MiB), scaled(4 * MiB)
    for chunking in (True, False):
        label = "BDAT" if chunking else "DATA"
        m, _ = attachment_message(200, size)
        follow, tail = attachment_message(201, 256 * 1024)
        with PyHost(chunking=chunking, die_after=die) as host, RelayTo(host) as r:
            c = Client(r.relay_port)
            c.envelope()
            if chunking:
                replies, (code, lines) = c.bdat(m, sizes=(MiB,))
                assert all(x[0] == 250 for x in replies[:-1]), (replies, r.logs())
            else:
                code, lines = c.data(m)
            assert 400 <= code < 500, (label, code, lines, r.logs())
            assert host.died and host.died[0] >= die, (label, host.died, host.commands[-5:])
            print(f"     {label}: smart host died after {host.died[0]} octets; the client got {lines[-1].decode()}"
                  + (f" at chunk {len(replies)}" if chunking else ""), flush=True)
            if chunking:  # after RSET …
                assert c.cmd(b"RSET")[0] == 250
            c.envelope()  # … or straight on with MAIL
            code, lines = c.bdat(follow)[1] if chunking else c.data(follow)
            assert code == 250 and b"queued as py-2-1" in lines[-1], (label, code, lines, r.logs())
            c.cmd(b"QUIT")
            c.close()
            host.check()
            assert [x["conn"] for x in host.messages] == [2], (label, host.messages)
            assert host.messages[0]["how"] == label
            check_signed_attachment(host.messages[0]["content"], 201, follow, tail)


# --- 6. a bare LF at the very end ---------------------------------------------

@case
def bare_lf_at_the_end_of_50mib_is_refused_and_nothing_delivered():
    size = scaled(50 * MiB)
    m, _, _ = text_message(b"bare lf at the end", size)
    wire = dot_stuff(m)[:-2] + b"\n\r\n.\r\n"  # "...last line<LF><CRLF>.<CRLF>"
    assert wire[-6:] == b"\n\r\n.\r\n" and wire[-7:-6] not in (b"\r", b"\n"), wire[-20:]
    for sink_chunking in (True, False):
        label = f"sink {'BDAT' if sink_chunking else 'DATA'}"
        with Relay(sink_extra=() if sink_chunking else ("--no-chunking",)) as s:
            c = Client(s.relay_port)
            c.envelope()
            code, lines = c.cmd(b"DATA")
            assert code == 354, lines
            c.send_pieces(wire, 4 * MiB)
            code, lines = c.reply()
            assert code == 550 and lines[-1].startswith(b"550 5.6.0"), (label, lines, s.logs())
            time.sleep(1)
            assert s.files() == [], (label, s.files())
            follow, tail = attachment_message(300, 64 * 1024)  # the same connection goes on
            c.envelope()
            code, lines = c.data(follow)
            assert code == 250, (label, lines, s.logs())
            c.close()
            files = s.eml(1)
            assert len(files) == 1 and s.files() == [os.path.basename(files[0])], (label, s.files())
            check_signed_attachment(read(files[0]), 300, follow, tail)
            counters = s.sink_counters()
            assert counters["messages"] == 1 and counters["saved"] == 1, (label, counters)
            assert counters["bytes"] > size // 2, (label, counters, "the relay did not stream the message")


# --- 7. MAIL and 100 RCPTs in one write ----------------------------------------

def odd_rcpts_unknown(addr):
    n = int(re.fullmatch(r"<r(\d+)@example\.net>", addr).group(1))
    return f"250 2.1.5 {addr} recipient ok" if n % 2 == 0 else f"550 5.1.1 {addr} no such user here"


@case
def pipelined_mail_and_100_rcpts_get_the_smart_hosts_replies_in_order():
    rcpts = ["r%03d@example.net" % n for n in range(1, 101)]  # RCPT n is r<n>
    with PyHost(rcpt=odd_rcpts_unknown, hold_rcpts=100) as host, RelayTo(host) as r:
        c = Client(r.relay_port)
        c.send(b"MAIL FROM:<%s>\r\n" % SENDER.encode() + b"".join(b"RCPT TO:<%s>\r\n" % x.encode() for x in rcpts))
        got = [c.reply()[1] for _ in range(101)]
        want = [[b"250 2.1.0 Sender OK"]] + [[odd_rcpts_unknown("<%s>" % x).encode()] for x in rcpts]
        assert got == want, [(i, g, w) for i, (g, w) in enumerate(zip(got, want)) if g != w][:5]
        m, tail = attachment_message(400, 64 * 1024)
        code, lines = c.data(m)
        assert code == 250 and b"queued as py-1-1" in lines[-1], (lines, r.logs())
        c.close()
        host.check()
        assert host.groups == [100], f"the RCPTs reached the smart host in groups of {host.groups}, not at once"
        [msg] = host.messages
        assert msg["rcpts"] == [b"RCPT TO:<%s>" % x.encode() for x in rcpts], msg["rcpts"][:5]
        check_signed_attachment(msg["content"], 400, m, tail)


# --- 8. a client that never reads its replies ------------------------------------

def flood_without_reading(port, tls):
    """Pipelines RSETs and reads nothing until the relay drops the connection.
    Returns (seconds, octets sent)."""
    c = Client(port, tls=tls, timeout=10, rcvbuf=4096)
    batch = b"RSET\r\n" * 2000
    sent, t0 = 0, time.monotonic()
    try:
        while time.monotonic() - t0 < 60 and sent < 512 * MiB:
            c.send(batch)  # 2,000 RSETs a write
            sent += len(batch)
        raise AssertionError(f"still connected after {sent} octets of RSETs in {time.monotonic() - t0:.1f}s")
    except socket.timeout:
        raise AssertionError(f"the relay stopped reading after {sent} octets but kept the connection")
    except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
        pass
    elapsed = time.monotonic() - t0
    # what is left to read, then EOF or RST
    deadline = time.monotonic() + 10
    try:
        while c.sock.recv(1 << 16):
            assert time.monotonic() < deadline, "no EOF after the disconnect"
    except (ConnectionResetError, ssl.SSLError):
        pass
    c.close()
    return elapsed, sent


@case
def client_that_never_reads_is_disconnected():
    with Relay() as s:
        other = Client(s.relay_port)  # an idle session of another client, open all along
        for tls in (False, True):
            seconds, sent = flood_without_reading(s.relay_port, tls)
            print(f"     {'TLS' if tls else 'plaintext'}: disconnected after {seconds:.1f}s, "
                  f"{sent // 6} RSETs sent", flush=True)
        assert "does not read its replies" in s.relay.stderr(), s.logs()
        other.envelope()
        m, tail = attachment_message(500, 64 * 1024)
        code, lines = other.data(m)
        assert code == 250, (lines, s.logs())
        code, lines = send_message(s.relay_port, attachment_message(501, 64 * 1024)[0], bdat=True)
        assert code == 250, (lines, s.logs())
        assert len(s.eml(2)) == 2, s.files()


if __name__ == "__main__":
    harness.run(5)
