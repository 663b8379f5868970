#!/usr/bin/env python3
"""A scriptable fake smart host for sigrelay's fault tests (Python stdlib only).

It speaks enough ESMTP for sigrelay's outbound client: greeting, EHLO
(PIPELINING, SIZE, 8BITMIME, ENHANCEDSTATUSCODES, optionally CHUNKING,
STARTTLS before TLS), STARTTLS with the test certificates (the client must
present a certificate that chains to ca.pem and carries --require-client-cert,
like smarthost-sink), MAIL, RCPT, DATA (dot-unstuffed), BDAT (with LAST), RSET,
NOOP, QUIT. Each delivered message is written to --save-dir (one file each,
written under a hidden name, then renamed to <conn>-<n>.eml). Everything that
happens goes to --events as JSON lines: {"t", "conn", "ev", ...} with ev one of
listening, open, cmd, reply, tls, chunk, dot, content, message, fault, close.

Faults come from flags, overridden by the JSON control file (--control), which
is re-read for every new connection (so a test switches a fault off by
rewriting it; connections already open keep what they started with). Keys
(flag in brackets):

  chunking        bool, offer CHUNKING (default true)            [--no-chunking]
  client_name     the certificate name required ("" = any)       [--require-client-cert]
  mail_fault_at   N: the Nth MAIL on a connection gets the fault [--mail-fault-at]
  mail_fault      "421" (421 4.4.2 reply, then close; default),
                  "eof" (close without reply), "rst" (reset)    [--mail-fault]
  idle_close      S: close a connection that waited S seconds for a command
                                                                 [--idle-close]
  idle_close_421  bool: say "421 4.4.2 idle" before closing it   [--idle-close-421]
  drop_at         after_greeting | after_ehlo | during_tls_handshake | after_mail |
                  after_rcpt | mid_body | after_body_before_reply  [--drop-at]
                  (after_greeting: right after the 220; after_ehlo: after the
                  reply to the first EHLO; during_tls_handshake: the ClientHello
                  is read and half of our first flight sent; after_mail / after_rcpt:
                  the MAIL / first RCPT is read, never answered;
                  mid_body: after mid_body_bytes octets of content;
                  after_body_before_reply: the message is complete, and saved —
                  RFC 1047's window — but never answered)
  mid_body_bytes  N (default 4096)                               [--mid-body-bytes]
  drop_how        "fin" (default: FIN, reading and dropping what comes after it,
                  so no RST follows), "close" (close at once: a RST follows
                  when input is unread), "rst" (a reset)         [--drop-how]
  rcpt_reply      {"n": "CODE text"}: the reply to the nth RCPT of a transaction;
                  a 421 closes the connection after it          [--rcpt-reply n=LINE]
  final_delay     S: wait S seconds before the reply to the end of a message
                  (the message is saved before the wait)         [--final-delay]

usage: smarthost.py --listen HOST:PORT --certs DIR --save-dir DIR --events FILE
                    [--control FILE] [fault flags]"""
import argparse
import json
import os
import signal
import socket
import ssl
import struct
import sys
import threading
import time

HOSTNAME = "fabrikam.mail.protection.outlook.com"
PHASES = ("after_greeting", "after_ehlo", "during_tls_handshake", "after_mail", "after_rcpt", "mid_body",
          "after_body_before_reply")


class Dropped(Exception):
    """The connection ends here, on purpose (a fault) or because the peer went."""


class Log:
    def __init__(self, path):
        self.f = open(path, "a", buffering=1)
        self.lock = threading.Lock()
        self.t0 = time.monotonic()

    def __call__(self, conn, ev, **kw):
        rec = {"t": round(time.monotonic() - self.t0, 4), "conn": conn, "ev": ev}
        rec.update(kw)
        line = json.dumps(rec)
        with self.lock:
            self.f.write(line + "\n")
            self.f.flush()


class Server:
    def __init__(self, args):
        self.args = args
        self.log = Log(args.events)
        self.save_dir = args.save_dir
        os.makedirs(self.save_dir, exist_ok=True)
        self.lock = threading.Lock()
        self.conns = 0
        self.delivered = 0
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self.ctx.load_cert_chain(os.path.join(args.certs, "smarthost.pem"), os.path.join(args.certs, "smarthost.key"))
        self.ctx.load_verify_locations(os.path.join(args.certs, "ca.pem"))
        self.ctx.verify_mode = ssl.CERT_REQUIRED

    def defaults(self):
        a = self.args
        rcpt = {}
        for item in a.rcpt_reply or []:
            n, line = item.split("=", 1)
            rcpt[str(int(n))] = line
        return {"chunking": not a.no_chunking, "client_name": a.require_client_cert,
                "mail_fault_at": a.mail_fault_at, "mail_fault": a.mail_fault, "idle_close": a.idle_close,
                "idle_close_421": a.idle_close_421, "drop_at": a.drop_at, "mid_body_bytes": a.mid_body_bytes,
                "drop_how": a.drop_how, "rcpt_reply": rcpt, "final_delay": a.final_delay}

    def config(self):
        conf = self.defaults()
        path = self.args.control
        if path and os.path.exists(path):
            try:
                with open(path) as f:
                    conf.update(json.load(f))
            except (OSError, ValueError) as e:  # a half-written file: the flags alone
                self.log(0, "control_error", error=repr(e))
        if conf.get("drop_at") not in (None, "") and conf["drop_at"] not in PHASES:
            raise SystemExit(f"smarthost.py: unknown drop_at {conf['drop_at']!r}")
        return conf

    def serve_forever(self):
        host, port = self.args.listen.rsplit(":", 1)
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((host, int(port)))
        ls.listen(256)
        self.log(0, "listening", port=ls.getsockname()[1])
        while True:
            sock, peer = ls.accept()
            with self.lock:
                self.conns += 1
                n = self.conns
            conf = self.config()
            threading.Thread(target=self.connection, args=(sock, n, peer, conf), daemon=True).start()

    def connection(self, sock, n, peer, conf):
        self.log(n, "open", peer=f"{peer[0]}:{peer[1]}", config={k: v for k, v in conf.items() if v})
        c = Conn(self, sock, n, conf)
        reason = "quit"
        try:
            c.run()
        except Dropped as e:
            reason = str(e)
        except (ConnectionError, ssl.SSLError, OSError) as e:
            reason = f"error: {e!r}"
        except Exception as e:  # a bug of this script: say so loudly
            reason = f"BUG: {e!r}"
            print(f"smarthost.py: connection {n}: {e!r}", file=sys.stderr, flush=True)
        finally:
            c.close()
            self.log(n, "close", reason=reason)

    def save(self, n, env, body):
        with self.lock:
            self.delivered += 1
            k = self.delivered
        name = f"{n}-{k}.eml"
        tmp = os.path.join(self.save_dir, "." + name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(body)
        os.rename(tmp, os.path.join(self.save_dir, name))
        self.log(n, "message", file=name, size=len(body), mail=env["from"], rcpts=env["rcpts"], how=env["how"])
        return f"fake-{n}-{k}"


class Conn:
    def __init__(self, server, sock, n, conf):
        self.srv, self.raw, self.sock, self.n, self.conf = server, sock, sock, n, conf
        self.buf = bytearray()
        self.tls = False
        self.mails = 0
        self.env = None
        self.got = 0  # content octets of the current message
        self.raw.settimeout(120)
        self.raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # ---- plumbing ----------------------------------------------------------------
    def log(self, ev, **kw):
        self.srv.log(self.n, ev, **kw)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
        try:
            self.raw.close()
        except OSError:
            pass

    def drop(self, what, how=None):
        how = how or self.conf.get("drop_how") or "fin"
        self.log("fault", fault=what, how=how)
        s = self.sock  # the descriptor (after STARTTLS the SSL socket owns it)
        if how == "rst":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif how == "close":
            pass  # close() at once: with input unread, the kernel resets (and drops what is unsent)
        else:
            # A clean FIN: what the peer sent meanwhile is read and dropped, so
            # that closing does not turn into a RST (which would discard replies
            # still on their way).
            try:
                s.shutdown(socket.SHUT_WR)  # an SSL socket reads raw bytes from now on
                s.settimeout(0.5)
                deadline = time.monotonic() + 2
                while time.monotonic() < deadline and s.recv(1 << 16):
                    pass
            except OSError:
                pass
        raise Dropped(f"fault {what} ({how})")

    def fill(self):
        data = self.sock.recv(1 << 16)
        if not data:
            raise Dropped("peer closed")
        self.buf += data

    def line(self, idle=False):
        """One CRLF line; with `idle`, the idle_close fault applies while waiting."""
        limit = self.conf.get("idle_close") if idle else None
        deadline = time.monotonic() + limit if limit else None
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return out
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.idle_close(limit)
                self.sock.settimeout(left)
                try:
                    self.fill()
                except socket.timeout:
                    self.idle_close(limit)
                finally:
                    self.sock.settimeout(120)
            else:
                self.fill()

    def idle_close(self, limit):
        if self.conf.get("idle_close_421"):
            self.send("421 4.4.2 %s closing idle connection" % HOSTNAME)
        self.drop(f"idle_close after {limit}s", "fin")

    def send(self, text):
        self.log("reply", reply=text.split("\r\n")[-1][:120] if "\r\n" in text else text[:120])
        self.sock.sendall(text.encode() + b"\r\n")

    def fault_here(self, phase):
        return self.conf.get("drop_at") == phase

    # ---- the session ---------------------------------------------------------------
    def run(self):
        self.send(f"220 {HOSTNAME} Microsoft ESMTP MAIL Service ready (fake)")
        if self.fault_here("after_greeting"):
            self.drop("after_greeting")
        while True:
            cmd = self.line(idle=True)
            self.log("cmd", cmd=cmd[:200].decode("latin-1"))
            verb = cmd.split(b" ", 1)[0].upper()
            handler = getattr(self, "do_" + verb.decode("latin-1"), None) if verb.isalpha() else None
            if handler is None:
                self.send("500 5.5.2 Unrecognized command")
                continue
            if handler(cmd) == "quit":
                return

    def do_EHLO(self, cmd):
        keys = ["PIPELINING", "SIZE 157286400", "8BITMIME", "ENHANCEDSTATUSCODES"]
        if self.conf.get("chunking", True):
            keys.append("CHUNKING")
        if not self.tls:
            keys.append("STARTTLS")
        lines = [f"{HOSTNAME} Hello [127.0.0.1]"] + keys
        self.send("\r\n".join(("250 " if i == len(lines) - 1 else "250-") + k for i, k in enumerate(lines)))
        if not self.tls and self.fault_here("after_ehlo"):
            self.drop("after_ehlo")

    def do_HELO(self, cmd):
        self.send(f"250 {HOSTNAME} Hello")

    def do_STARTTLS(self, cmd):
        if self.tls:
            self.send("503 5.5.1 TLS already active")
            return
        self.send("220 2.0.0 SMTP server ready")
        if self.buf:  # pipelined behind STARTTLS: discarded, never read as commands
            self.log("discarded", octets=len(self.buf))
            self.buf.clear()
        if self.fault_here("during_tls_handshake"):
            self.half_handshake()
        self.sock = self.srv.ctx.wrap_socket(self.raw, server_side=True)
        self.tls = True
        peer = self.sock.getpeercert() or {}
        names = [v for k, v in peer.get("subjectAltName", ()) if k == "DNS"]
        names += [v for rdn in peer.get("subject", ()) for k, v in rdn if k == "commonName" and v not in names]
        self.log("tls", version=self.sock.version(), cipher=self.sock.cipher()[0], client=names,
                 resumed=self.sock.session_reused)
        want = self.conf.get("client_name")
        if want and not any(x.lower() == want.lower() for x in names):
            self.send("421 4.7.1 the client certificate does not carry " + want)
            self.drop("client certificate name", "fin")

    def half_handshake(self):
        """Reads the ClientHello, sends half of our first flight, then the connection goes."""
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = self.srv.ctx.wrap_bio(inc, out, server_side=True)
        deadline = time.monotonic() + 5
        flight = b""
        while not flight and time.monotonic() < deadline:
            data = self.raw.recv(1 << 16)
            if not data:
                raise Dropped("peer closed in the handshake")
            inc.write(data)
            try:
                obj.do_handshake()
            except ssl.SSLWantReadError:
                pass
            flight = out.read()
        self.raw.sendall(flight[:max(1, len(flight) // 2)])
        self.log("tls_partial", sent=max(1, len(flight) // 2), of=len(flight))
        self.drop("during_tls_handshake")

    def do_MAIL(self, cmd):
        if not self.tls:
            self.send("530 5.7.0 Must issue a STARTTLS command first")
            return
        if self.env is not None:
            self.send("503 5.5.1 Sender already specified")
            return
        self.mails += 1
        if self.conf.get("mail_fault_at") and self.mails == int(self.conf["mail_fault_at"]):
            kind = str(self.conf.get("mail_fault") or "421")
            if kind == "421":
                self.send("421 4.4.2 Message submission rate for this client has exceeded the configured limit")
                self.drop(f"421 at MAIL {self.mails}")
            self.drop(f"{kind} at MAIL {self.mails}", "rst" if kind == "rst" else "fin")
        if self.fault_here("after_mail"):
            self.drop("after_mail")
        self.env = {"from": cmd[10:].decode("latin-1"), "rcpts": [], "chunks": bytearray(), "how": None}
        self.got = 0
        self.send("250 2.1.0 Sender OK")

    def do_RCPT(self, cmd):
        if self.env is None:
            self.send("503 5.5.1 Need MAIL command")
            return
        if self.fault_here("after_rcpt"):
            self.drop("after_rcpt")
        k = len(self.env.setdefault("tried", [])) + 1
        self.env["tried"].append(cmd)
        special = (self.conf.get("rcpt_reply") or {}).get(str(k))
        if special:
            self.send(special)
            if special.startswith("421"):
                self.drop(f"421 at RCPT {k}")
            return
        self.env["rcpts"].append(cmd[8:].decode("latin-1"))
        self.send("250 2.1.5 Recipient OK")

    def content(self, nbytes):
        self.got += nbytes
        if self.fault_here("mid_body") and self.got >= int(self.conf.get("mid_body_bytes") or 4096):
            self.drop(f"mid_body after {self.got} octets")

    def do_DATA(self, cmd):
        if self.env is None or not self.env["rcpts"]:
            self.send("503 5.5.1 Need MAIL and RCPT" if self.env is None else "554 5.5.1 No valid recipients")
            return
        self.send("354 Start mail input; end with <CRLF>.<CRLF>")
        self.buf[0:0] = b"\r\n"  # the CRLF that ended DATA starts the end marker
        scanned = 2
        while True:
            i = self.buf.find(b"\r\n.\r\n", max(0, scanned - 4))
            if i >= 0:
                self.content(i + 5 - scanned)
                break
            self.content(len(self.buf) - scanned)
            scanned = len(self.buf)
            self.fill()
        body = bytes(self.buf[2:i + 2])
        del self.buf[:i + 5]
        self.log("dot", octets=len(body))
        body = body.replace(b"\r\n..", b"\r\n.")
        if body.startswith(b".."):
            body = body[1:]
        self.env["how"] = "DATA"
        self.deliver(body)

    def do_BDAT(self, cmd):
        parts = cmd.split()
        try:
            size = int(parts[1])
            last = len(parts) > 2 and parts[2].upper() == b"LAST"
        except (IndexError, ValueError):
            self.send("501 5.5.4 Syntax: BDAT size [LAST]")
            return
        left = size
        chunk = bytearray()
        while left:
            if not self.buf:
                self.fill()
            take = min(left, len(self.buf))
            chunk += self.buf[:take]
            del self.buf[:take]
            left -= take
            if self.env is not None:
                self.content(take)
        self.log("chunk", size=size, last=last)
        if self.env is None or not self.env["rcpts"]:
            self.send("503 5.5.1 Need MAIL and RCPT" if self.env is None else "554 5.5.1 No valid recipients")
            return
        self.env["chunks"] += chunk
        if not last:
            self.send(f"250 2.0.0 {size} octets received")
            return
        self.env["how"] = "BDAT"
        self.deliver(bytes(self.env["chunks"]))

    def deliver(self, body):
        env = self.env
        self.env = None
        self.log("content", octets=len(body))
        qid = self.srv.save(self.n, env, body)
        if self.fault_here("after_body_before_reply"):
            self.drop("after_body_before_reply")
        delay = float(self.conf.get("final_delay") or 0)
        if delay:
            self.log("delay", seconds=delay)
            time.sleep(delay)
        self.send(f"250 2.0.0 OK queued as {qid}")

    def do_RSET(self, cmd):
        self.env = None
        self.send("250 2.0.0 Resetting")

    def do_NOOP(self, cmd):
        self.send("250 2.0.0 OK")

    def do_QUIT(self, cmd):
        self.send(f"221 2.0.0 {HOSTNAME} Service closing transmission channel")
        return "quit"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--listen", required=True, help="HOST:PORT (port 0: any; see the 'listening' event)")
    p.add_argument("--certs", required=True, help="directory with smarthost.pem/.key and ca.pem")
    p.add_argument("--save-dir", required=True)
    p.add_argument("--events", required=True, help="JSON-lines event log (appended)")
    p.add_argument("--control", help="JSON file of faults, re-read for every connection")
    p.add_argument("--no-chunking", action="store_true")
    p.add_argument("--require-client-cert", default="S5HG3DCG14.smtp.contososignatureservice.com")
    p.add_argument("--mail-fault-at", type=int, default=0)
    p.add_argument("--mail-fault", choices=("421", "eof", "rst"), default="421")
    p.add_argument("--idle-close", type=float, default=0)
    p.add_argument("--idle-close-421", action="store_true")
    p.add_argument("--drop-at", choices=PHASES)
    p.add_argument("--mid-body-bytes", type=int, default=4096)
    p.add_argument("--drop-how", choices=("fin", "close", "rst"), default="fin")
    p.add_argument("--rcpt-reply", action="append", metavar="N=LINE")
    p.add_argument("--final-delay", type=float, default=0)
    args = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    srv = Server(args)
    srv.config()  # a bad control file or flag fails now, not at the first connection
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
