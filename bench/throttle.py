#!/usr/bin/env python3
"""A slow link on loopback: a TCP proxy that forwards one direction at a fixed rate.

    bench/throttle.py --listen 127.0.0.1:2536 --target 127.0.0.1:2526 --rate 4000000

Every connection accepted on --listen gets its own connection to --target.
Bytes from the accepting side (the relay) toward the target (the smart host)
pass through a token bucket of --rate bytes/s (--burst bytes deep); the other
direction (greeting, replies) is copied as fast as it comes. It is TCP-level:
it copies bytes and never looks at them, so STARTTLS, the TLS handshake with
the tenant's client certificate and everything after pass through untouched.

The proxy reads from the fast side only as fast as it forwards, so a sender
sees TCP flow control (its socket buffer fills), the way it would in front of
a slow smart host. By default one bucket is shared by all connections (the
link is --rate in all); --per-connection gives each connection its own.

On SIGTERM/SIGINT it prints one JSON line of counters to stdout and exits 0.
Plain asyncio, no dependencies; loopback addresses only.
"""
import argparse
import asyncio
import ipaddress
import json
import signal
import sys
import time

CHUNK = 16 * 1024


class Bucket:
    """Token bucket with reservations: a taker that finds the bucket short
    goes into debt and sleeps until its bytes are paid for, so takers are
    served in the order they asked and none starves."""

    def __init__(self, rate, burst):
        self.rate = float(rate)
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    async def take(self, n):
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= n
        if self.tokens < 0:
            await asyncio.sleep(-self.tokens / self.rate)


class Stats:
    def __init__(self):
        self.connections = 0
        self.active = 0
        self.errors = 0
        self.probes = 0
        self.bytes_up = 0    # listen side -> target (throttled)
        self.bytes_down = 0  # target -> listen side
        self.started = time.monotonic()

    def json(self):
        secs = time.monotonic() - self.started
        return json.dumps({"connections": self.connections, "active": self.active, "errors": self.errors,
                           "probes": self.probes,
                           "bytes_to_target": self.bytes_up, "bytes_from_target": self.bytes_down,
                           "seconds": round(secs, 3)})


def hostport(s):
    host, _, port = s.rpartition(":")
    host = host.strip("[]")
    if not ipaddress.ip_address(host).is_loopback:
        raise argparse.ArgumentTypeError(f"{s}: loopback addresses only")
    return host, int(port)


async def pump(reader, writer, bucket, stats, up, moved):
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            if bucket is not None:
                await bucket.take(len(data))
            writer.write(data)
            await writer.drain()
            if up:
                stats.bytes_up += len(data)
                moved[0] += len(data)
            else:
                stats.bytes_down += len(data)
    except (ConnectionError, OSError) as e:
        # A reset from either side (e.g. a peer that aborts rather than
        # closes); counted and logged, the other direction is cut too.
        # A connection that never sent a byte is a port probe (wait_port).
        if moved[0]:
            stats.errors += 1
        else:
            stats.probes += 1
        print(f"throttle: {'to target' if up else 'from target'}: {e!r}", file=sys.stderr, flush=True)
        writer.transport.abort()
        return
    # Pass the end of the stream on (half-close). The other side may be gone
    # already (QUIT answered and closed): that is the end, not an error.
    try:
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", type=hostport, required=True, help="HOST:PORT to accept on (loopback)")
    ap.add_argument("--target", type=hostport, required=True, help="HOST:PORT to forward to (loopback)")
    ap.add_argument("--rate", type=float, required=True, help="bytes/s from the listen side to the target")
    ap.add_argument("--burst", type=int, default=64 * 1024, help="bucket depth in bytes (default 64 KiB)")
    ap.add_argument("--per-connection", action="store_true", help="a bucket per connection, not one for all")
    ap.add_argument("--down-rate", type=float, default=0, help="also throttle target -> listen side (0: off)")
    a = ap.parse_args()

    stats = Stats()
    shared_up = Bucket(a.rate, a.burst)
    shared_down = Bucket(a.down_rate, a.burst) if a.down_rate > 0 else None

    async def handle(creader, cwriter):
        stats.connections += 1
        stats.active += 1
        try:
            try:
                treader, twriter = await asyncio.open_connection(*a.target)
            except OSError:
                stats.errors += 1
                cwriter.transport.abort()
                return
            up = Bucket(a.rate, a.burst) if a.per_connection else shared_up
            down = (Bucket(a.down_rate, a.burst) if a.down_rate > 0 else None) if a.per_connection else shared_down
            moved = [0]
            await asyncio.gather(pump(creader, twriter, up, stats, True, moved),
                                 pump(treader, cwriter, down, stats, False, moved))
            for w in (twriter, cwriter):
                w.close()
        finally:
            stats.active -= 1

    server = await asyncio.start_server(handle, *a.listen, limit=CHUNK * 2)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"throttle: {a.listen[0]}:{a.listen[1]} -> {a.target[0]}:{a.target[1]} at {a.rate:.0f} B/s"
          f"{' per connection' if a.per_connection else ' in all'}", file=sys.stderr, flush=True)
    async with server:
        await stop.wait()
    print(stats.json(), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
