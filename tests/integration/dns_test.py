"""Smart-host names through a DNS server of the test's own (dns_server.py),
given to sigrelay with --dns-server: every address is tried, the TTL is
honoured, and a silent resolver delays only the tenant whose name it owes.

usage: dns_test.py SIGRELAY SINK BLASTER CERTS_DIR EXAMPLES_DIR [case ...]"""
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import harness
from harness import Process, case, free_port

with harness.helpers_only():
    import relay_test as rt

HERE = os.path.dirname(os.path.abspath(__file__))


class Dns:
    """dns_server.py on 127.0.0.1, serving a zone the test rewrites."""

    def __init__(self, names, ttl=300):
        self.dir = tempfile.mkdtemp(prefix="sigrelay-dns-")
        self.zone = os.path.join(self.dir, "zone.json")
        self.log = os.path.join(self.dir, "queries.log")
        self.set(names, ttl)
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "dns_server.py"), "--zone", self.zone,
                                      "--log", self.log], stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline())

    def set(self, names, ttl=300):
        tmp = self.zone + ".new"
        with open(tmp, "w") as f:
            json.dump({"ttl": ttl, "names": names}, f)
        os.replace(tmp, self.zone)

    def queries(self, name):
        try:
            with open(self.log) as f:
                return sum(1 for line in f if line.split()[0] == name)
        except OSError:
            return 0

    def close(self):
        self.proc.kill()
        self.proc.wait()


def sink_on(ip, port, save):
    return Process([rt.SINK, "--listen", f"{ip}:{port}", "--threads", "1", "--save-dir", save,
                    "--tls-cert", rt.cert("smarthost.pem"), "--tls-key", rt.cert("smarthost.key"),
                    "--require-client-cert", rt.FABRIKAM_CERT, "--client-ca", rt.cert("ca.pem")],
                   port=None)


def wait_listening(ip, port):
    harness.wait_for_banner(port, host=ip)


def saved_in(d):
    return [f for f in os.listdir(d) if f.endswith(".eml")] if os.path.isdir(d) else []


def send(setup):
    with setup.smtp() as c:
        c.send_message(rt.text_message())


@case
def every_address_is_tried_when_the_first_refuses():
    port = free_port()
    dns = Dns({"fab.test": {"A": ["127.0.0.3", "127.0.0.1"]}})
    try:
        # Nothing listens on 127.0.0.3:port: a connection there is refused.
        with rt.Setup(relay_extra=("--threads", "1", "--dns-server", f"127.0.0.1:{dns.port}"),
                      smart_host=f"fab.test:{port}") as s:
            # Setup started its sink on its own port; this one is where DNS points.
            save = os.path.join(s.dir, "second")
            with sink_on("127.0.0.1", port, save) as sink:
                wait_listening("127.0.0.1", port)
                for _ in range(5):
                    send(s)
                deadline = time.monotonic() + 10
                while len(saved_in(save)) < 5 and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert len(saved_in(save)) == 5, saved_in(save)
            assert dns.queries("fab.test") >= 1
    finally:
        dns.close()


@case
def a_changed_answer_is_used_after_its_ttl_without_sighup():
    port = free_port()
    dns = Dns({"fab.test": {"A": ["127.0.0.1"], "ttl": 1}})
    try:
        with rt.Setup(relay_extra=("--threads", "1", "--dns-server", f"127.0.0.1:{dns.port}"),
                      smart_host=f"fab.test:{port}") as s:
            first, second = os.path.join(s.dir, "first"), os.path.join(s.dir, "second")
            with sink_on("127.0.0.1", port, first), sink_on("127.0.0.4", port, second):
                wait_listening("127.0.0.1", port)
                wait_listening("127.0.0.4", port)
                send(s)
                assert len(saved_in(first)) == 1 and not saved_in(second)
                dns.set({"fab.test": {"A": ["127.0.0.4"], "ttl": 1}})
                # The resolver keeps an answer at least 5 s (its minimum TTL).
                time.sleep(6.5)
                send(s)
                deadline = time.monotonic() + 10
                while not saved_in(second) and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert len(saved_in(second)) == 1, "the new address was not used"
                assert len(saved_in(first)) == 1, "the old address got the second message"
            assert dns.queries("fab.test") >= 2
    finally:
        dns.close()


@case
def a_silent_resolver_delays_only_the_tenant_it_owes():
    fab_port, con_port = free_port(), free_port()
    dns = Dns({"fab.test": {"A": ["127.0.0.1"]}, "slow.test": {"A": ["127.0.0.1"], "mode": "silent"}})
    try:
        with rt.Setup(relay_extra=("--threads", "1", "--dns-server", f"127.0.0.1:{dns.port}"),
                      smart_host=f"fab.test:{fab_port}") as s:
            # A second tenant whose smart host name the resolver never answers.
            rt.tenants_file(s.dir, fab_port, contoso_port=con_port, smart_host=f"fab.test:{fab_port}")
            with open(s.tenants) as f:
                conf = json.load(f)
            conf["tenants"][1]["smart_host"] = f"slow.test:{con_port}"
            with open(s.tenants, "w") as f:
                json.dump(conf, f)
            s.relay.proc.send_signal(rt.signal.SIGHUP)
            time.sleep(0.5)
            save = os.path.join(s.dir, "fab")
            with sink_on("127.0.0.1", fab_port, save):
                wait_listening("127.0.0.1", fab_port)
                stuck = {}

                def contoso():
                    with s.smtp() as c:
                        try:
                            c.send_message(rt.text_message(sender="ann@contoso.com"))
                            stuck["reply"] = 250
                        except rt.smtplib.SMTPException as e:
                            stuck["reply"] = getattr(e, "smtp_code", None) or \
                                next(iter(getattr(e, "recipients", {}).values()), (None,))[0]
                t = threading.Thread(target=contoso)
                t.start()
                time.sleep(0.2)
                for i in range(5):
                    t0 = time.monotonic()
                    send(s)
                    took = time.monotonic() - t0
                    assert took < 2, f"message {i} of the other tenant took {took:.1f} s"
                t.join(30)
                assert not t.is_alive()
                # The tenant whose name never resolved got a temporary failure.
                assert str(stuck.get("reply", "")).startswith("4"), stuck
                deadline = time.monotonic() + 5
                while len(saved_in(save)) < 5 and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert len(saved_in(save)) == 5
    finally:
        dns.close()


if __name__ == "__main__":
    harness.run(5)
