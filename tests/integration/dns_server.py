#!/usr/bin/env python3
"""A tiny scripted DNS server for tests (stdlib only), UDP and TCP on one port.

    dns_server.py --zone ZONE.json [--log QUERIES.log] [--host 127.0.0.1] [--port 0]

Prints the port it listens on (one line) on stdout once both sockets are bound. The zone
file is read again for every query, so a test changes the answers while the server runs
(write a new file and rename it over the old one). A file that does not parse keeps the
last good zone. Format:

    {
      "mode": "answer",        # default for every name: answer | nxdomain | servfail |
                               #   refused | silent (drop the query, send nothing)
      "ttl": 300,              # default TTL of every record
      "names": {
        "two.test": {"A": ["192.0.2.1", "192.0.2.2"], "AAAA": ["2001:db8::1"],
                     "ttl": 2,           # optional, this name's TTL
                     "mode": "answer",   # optional, overrides the default mode
                     "delay_ms": 0},     # optional, answer this much later
        "alias.test": {"CNAME": "two.test"}
      }
    }

Names are case-insensitive, without the trailing dot. In mode "answer", a name that is not
listed gets NXDOMAIN, and a listed name with no record of the asked type gets an empty
NOERROR answer (NODATA) with an SOA. Each query is logged as one line "name TYPE mode" (TYPE
as A, AAAA or the number; mode as applied) to --log, flushed at once, so a test can count them.
The server exits when its parent process does.
"""

import argparse
import json
import os
import socket
import struct
import sys
import threading
import time

TYPES = {1: "A", 5: "CNAME", 6: "SOA", 28: "AAAA"}
RCODES = {"nxdomain": 3, "servfail": 2, "refused": 5}


class Zone:
    def __init__(self, path):
        self.path = path
        self.last = {}
        self.lock = threading.Lock()

    def get(self):
        try:
            with open(self.path, "r", encoding="utf-8") as f:
                z = json.load(f)
            with self.lock:
                self.last = z
        except (OSError, ValueError):
            with self.lock:
                z = self.last
        return z


class Log:
    def __init__(self, path):
        self.f = open(path, "a", encoding="utf-8") if path else None
        self.lock = threading.Lock()

    def write(self, line):
        if self.f is None:
            return
        with self.lock:
            self.f.write(line + "\n")
            self.f.flush()


def encode_name(name):
    out = b""
    for label in name.split("."):
        if label:
            b = label.encode("ascii")
            out += bytes([len(b)]) + b
    return out + b"\x00"


def parse_question(msg):
    """Returns (id, flags, qname, qtype, question_bytes) or None."""
    if len(msg) < 12:
        return None
    qid, flags, qdcount = struct.unpack("!HHH", msg[:6])
    if qdcount < 1 or flags & 0x8000:
        return None
    pos = 12
    labels = []
    while True:
        if pos >= len(msg):
            return None
        n = msg[pos]
        pos += 1
        if n == 0:
            break
        if n & 0xC0:
            return None  # no compression in a question
        labels.append(msg[pos:pos + n].decode("ascii", "replace"))
        pos += n
    if pos + 4 > len(msg):
        return None
    qtype, _qclass = struct.unpack("!HH", msg[pos:pos + 4])
    pos += 4
    return qid, flags, ".".join(labels).lower(), qtype, msg[12:pos]


def rr(name_bytes, rtype, ttl, rdata):
    return name_bytes + struct.pack("!HHIH", rtype, 1, ttl, len(rdata)) + rdata


def soa_rdata(ttl):
    return (encode_name("ns.test") + encode_name("hostmaster.test") +
            struct.pack("!IIIII", 1, 3600, 600, 86400, ttl))


def answer(zone, msg):
    """Returns (response bytes or None to stay silent, delay in seconds, log line)."""
    q = parse_question(msg)
    if q is None:
        return None, 0, None
    qid, flags, qname, qtype, question = q
    names = zone.get("names", {})
    default_ttl = int(zone.get("ttl", 300))
    entry = names.get(qname, None)
    mode = zone.get("mode", "answer")
    if isinstance(entry, dict) and "mode" in entry:
        mode = entry["mode"]
    delay = 0.0
    if isinstance(entry, dict):
        delay = float(entry.get("delay_ms", 0)) / 1000.0
    line = "%s %s %s" % (qname, TYPES.get(qtype, str(qtype)), mode)
    if mode == "silent":
        return None, 0, line

    rd = flags & 0x0100
    opcode = flags & 0x7800
    rcode = RCODES.get(mode, 0)
    answers = []
    authority = []
    if rcode == 0:
        if entry is None:
            rcode = 3
        else:
            owner = b"\xc0\x0c"  # the question's name
            current = entry
            hops = 0
            while isinstance(current, dict) and "CNAME" in current and hops < 8:
                target = current["CNAME"].lower().rstrip(".")
                ttl = int(current.get("ttl", default_ttl))
                answers.append(rr(owner, 5, ttl, encode_name(target)))
                owner = encode_name(target)
                current = names.get(target, None)
                hops += 1
            if isinstance(current, dict):
                ttl = int(current.get("ttl", default_ttl))
                if qtype == 1:
                    for ip in current.get("A", []):
                        answers.append(rr(owner, 1, ttl, socket.inet_pton(socket.AF_INET, ip)))
                elif qtype == 28:
                    for ip in current.get("AAAA", []):
                        answers.append(rr(owner, 28, ttl, socket.inet_pton(socket.AF_INET6, ip)))
            elif hops == 0:
                rcode = 3
            if rcode == 0 and not answers:
                authority.append(rr(encode_name("test"), 6, default_ttl, soa_rdata(default_ttl)))
    if rcode == 3:
        authority.append(rr(encode_name("test"), 6, default_ttl, soa_rdata(default_ttl)))
    rflags = 0x8000 | opcode | 0x0400 | rd | 0x0080 | rcode
    header = struct.pack("!HHHHHH", qid, rflags, 1, len(answers), len(authority), 0)
    return header + question + b"".join(answers) + b"".join(authority), delay, line


def serve_udp(sock, zone, log):
    while True:
        try:
            msg, peer = sock.recvfrom(4096)
        except OSError:
            return
        resp, delay, line = answer(zone.get(), msg)
        if line:
            log.write(line)
        if resp is None:
            continue
        if delay > 0:
            threading.Timer(delay, lambda r=resp, p=peer: sock.sendto(r, p)).start()
        else:
            sock.sendto(resp, peer)


def recv_exact(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def serve_tcp_conn(conn, zone, log):
    with conn:
        while True:
            head = recv_exact(conn, 2)
            if head is None:
                return
            msg = recv_exact(conn, struct.unpack("!H", head)[0])
            if msg is None:
                return
            resp, delay, line = answer(zone.get(), msg)
            if line:
                log.write(line + " tcp")
            if resp is None:
                continue
            if delay > 0:
                time.sleep(delay)
            conn.sendall(struct.pack("!H", len(resp)) + resp)


def serve_tcp(sock, zone, log):
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        threading.Thread(target=serve_tcp_conn, args=(conn, zone, log), daemon=True).start()


def bind(host, port):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        udp.bind((host, port))
        chosen = udp.getsockname()[1]
        tcp = socket.socket(family, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            tcp.bind((host, chosen))
        except OSError:
            udp.close()
            tcp.close()
            if port != 0:
                raise
            continue
        tcp.listen(16)
        return udp, tcp, chosen
    raise OSError("no port free for both UDP and TCP")


def watch_parent():
    parent = os.getppid()
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zone", required=True)
    ap.add_argument("--log", default="")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()

    zone = Zone(args.zone)
    zone.get()
    log = Log(args.log)
    udp, tcp, port = bind(args.host, args.port)
    threading.Thread(target=watch_parent, daemon=True).start()
    threading.Thread(target=serve_tcp, args=(tcp, zone, log), daemon=True).start()
    sys.stdout.write("%d\n" % port)
    sys.stdout.flush()
    serve_udp(udp, zone, log)


if __name__ == "__main__":
    main()
