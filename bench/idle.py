#!/usr/bin/env python3
"""Idle TLS sessions held by sigrelay, and what each costs in memory.

Starts a 1-shard relay (release build), opens N connections on loopback,
takes each through EHLO and STARTTLS and a second EHLO, then leaves them
idle and reads the relay's resident set (VmRSS) before and after.
Prints one JSON line: sessions held, RSS before/after, bytes per session.

Usage: bench/idle.py [N] [BUILD]      (default 10000, build-release)
Needs the file-descriptor limit above N (the script raises its own soft
limit to the hard one).
"""
import json
import os
import resource
import socket
import ssl
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
BUILD = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "build-release")
PORT = 2598


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def reply(f):
    lines = []
    while True:
        line = f.readline()
        if not line:
            raise ConnectionError("closed")
        lines.append(line)
        if line[3:4] != b"-":
            return lines


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    subprocess.run(["bash", os.path.join(ROOT, "scripts/gen-certs.sh"), os.path.join(ROOT, "certs")],
                   check=True, stdout=subprocess.DEVNULL)
    certs = os.path.join(ROOT, "certs")
    relay = subprocess.Popen([os.path.join(BUILD, "sigrelay"), "--listen", f"127.0.0.1:{PORT}",
                              "--tenants", os.path.join(ROOT, "examples/tenants.json"), "--threads", "1",
                              "--tls-cert", os.path.join(certs, "relay.pem"),
                              "--tls-key", os.path.join(certs, "relay.key"),
                              "--max-connections", str(N + 100), "--command-timeout", "3600",
                              "--quiet"], stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", PORT), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        time.sleep(0.5)
        before = rss_kib(relay.pid)
        ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
        held = []
        t0 = time.time()
        for _ in range(N):
            s = socket.create_connection(("127.0.0.1", PORT), timeout=30)
            f = s.makefile("rb")
            reply(f)
            s.sendall(b"EHLO idle.test\r\n")
            reply(f)
            s.sendall(b"STARTTLS\r\n")
            reply(f)
            t = ctx.wrap_socket(s, server_hostname="smtp.contososignatureservice.com")
            tf = t.makefile("rb")
            t.sendall(b"EHLO idle.test\r\n")
            reply(tf)
            held.append((t, tf))
        setup = time.time() - t0
        time.sleep(2)  # let the relay settle (freed handshake state, jemalloc purge)
        after = rss_kib(relay.pid)
        print(json.dumps({"sessions": len(held), "rss_before_kib": before, "rss_after_kib": after,
                          "bytes_per_session": round((after - before) * 1024 / max(1, len(held))),
                          "setup_seconds": round(setup, 1)}))
    finally:
        relay.terminate()
        relay.wait(timeout=60)


if __name__ == "__main__":
    main()
