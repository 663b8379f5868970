"""A tiny test harness for the integration tests: named cases, processes
started and stopped around them, and the closing line "N passed, N failed".

Every case runs against real processes over loopback; nothing is mocked."""
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

_cases = []


def case(fn):
    _cases.append(fn)
    return fn


@contextlib.contextmanager
def helpers_only():
    """Imports another test script for its helpers: the cases it declares are
    not added to this run (`with harness.helpers_only(): import relay_test`)."""
    kept = list(_cases)
    try:
        yield
    finally:
        _cases[:] = kept


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_listener(port, host="127.0.0.1", timeout=10.0):
    """For servers that speak only after the client (PROXY protocol)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {host}:{port}")


def wait_for_banner(port, host="127.0.0.1", timeout=10.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=2) as s:
                data = s.recv(512)
                if data[:3].isdigit():  # 220, or a 554/421 refusal: it is up
                    try:
                        s.sendall(b"QUIT\r\n")
                        while s.recv(512):  # until the server closed its side
                            pass
                    except OSError:
                        pass
                    return
        except OSError as e:
            last = e
        time.sleep(0.05)
    raise AssertionError(f"nothing answered on {host}:{port}: {last}")


class Process:
    """A server process with its stderr captured to a file."""

    def __init__(self, argv, port=None, env=None, banner=True):
        self.argv = [str(a) for a in argv]
        self.log = tempfile.NamedTemporaryFile(prefix="sigrelay-it-", suffix=".log", delete=False)
        self.out = tempfile.NamedTemporaryFile(prefix="sigrelay-it-", suffix=".out", delete=False)
        self.proc = subprocess.Popen(self.argv, stdout=self.out, stderr=self.log, env=env)
        if port is not None:
            try:
                (wait_for_banner if banner else wait_for_listener)(port)
            except AssertionError:
                self.kill()
                raise AssertionError(f"{self.argv[0]} did not start: {self.stderr()}")

    def stderr(self):
        with open(self.log.name, "rb") as f:
            return f.read().decode(errors="replace")

    def stdout(self):
        with open(self.out.name, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout=20):
        """Signals the process and waits; returns its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"{self.argv[0]} did not exit within {timeout}s of signal {sig}")
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()
        for f in (self.log, self.out):
            try:
                os.unlink(f.name)
            except OSError:
                pass


def run(fixed_args):
    """Runs the cases; arguments after the first `fixed_args` name cases to run."""
    only = sys.argv[1 + fixed_args:] or None
    passed = failed = 0
    for fn in _cases:
        if only and fn.__name__ not in only:
            continue
        t0 = time.monotonic()
        try:
            fn()
            passed += 1
            print(f"ok   {fn.__name__} ({time.monotonic() - t0:.2f}s)", flush=True)
        except Exception:
            failed += 1
            print(f"FAIL {fn.__name__}", flush=True)
            traceback.print_exc(file=sys.stdout)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed or not passed else 0)
