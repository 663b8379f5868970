"""sigrelay end to end: real SMTP clients (swaks, smtplib, raw sockets,
smtp-blaster) → sigrelay → smarthost-sink standing in for Exchange Online,
over STARTTLS both ways with the tenant's client certificate.

usage: relay_test.py SIGRELAY SINK BLASTER CERTS_DIR EXAMPLES_DIR [case ...]"""
import email
import email.policy
import glob
import json
import os
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time

import harness
from harness import Process, case, free_port

RELAY = os.path.abspath(sys.argv[1])
SINK = os.path.abspath(sys.argv[2])
BLASTER = os.path.abspath(sys.argv[3])
CERTS = os.path.abspath(sys.argv[4])
EXAMPLES = os.path.abspath(sys.argv[5])
SWAKS = shutil.which("swaks")
FABRIKAM_CERT = "S5HG3DCG14.smtp.contososignatureservice.com"
RELAY_NAME = "smtp.contososignatureservice.com"


def cert(name):
    return os.path.join(CERTS, name)


def tenants_file(d, sink_port, contoso_port=None, **fabrikam_extra):
    """Writes a tenants file for the examples' templates and directories."""
    for item in ("fabrikam", "contoso", "fabrikam-users.ndjson", "contoso-users.ndjson"):
        src = os.path.join(EXAMPLES, item)
        dst = os.path.join(d, item)
        if not os.path.exists(dst):
            (shutil.copytree if os.path.isdir(src) else shutil.copy)(src, dst)
    fabrikam = {
        "id": "fabrikam",
        "domains": ["fabrikam.com", "fabrikam.onmicrosoft.com"],
        "smart_host": f"127.0.0.1:{sink_port}",
        "tls_domain": "fabrikam.mail.protection.outlook.com",
        "smart_host_ca": cert("ca.pem"),
        "certificate_domain": FABRIKAM_CERT,
        "client_cert": cert("S5HG3DCG14.pem"), "client_key": cert("S5HG3DCG14.key"),
        "processed_header": {"name": "SignatureContoso", "value": "true"},
        "images": {"logo": {"file": "fabrikam/logo.png", "url": "https://cdn.fabrikam.example/logo.png"}},
        "templates": {"default": {"html_file": "fabrikam/default.html", "text_file": "fabrikam/default.txt",
                                  "placement": "below_reply"}},
        "rules": [{"when": {"subject_contains": "[nosig]"}, "template": None}, {"template": "default"}],
        "directory_file": "fabrikam-users.ndjson",
    }
    fabrikam.update(fabrikam_extra)
    tenants = [fabrikam]
    if contoso_port:
        tenants.append({
            "id": "contoso", "domains": ["contoso.com"],
            "smart_host": f"127.0.0.1:{contoso_port}",
            "tls_domain": "contoso.mail.protection.outlook.com",
            "smart_host_ca": cert("ca.pem"),
            "client_cert": cert("K7QW2PLM55.pem"), "client_key": cert("K7QW2PLM55.key"),
            "processed_header": {"name": "SignatureContoso", "value": "true"},
            "templates": {"default": {"html_file": "contoso/default.html", "text_file": "contoso/default.txt",
                                      "placement": "bottom"}},
            "rules": [{"template": "default"}],
            "directory_file": "contoso-users.ndjson",
        })
    path = os.path.join(d, "tenants.json")
    with open(path, "w") as f:
        json.dump({"tenants": tenants}, f, indent=1)
    return path


def start_sink(port, save, *extra, client_name=FABRIKAM_CERT):
    return Process([SINK, "--listen", f"127.0.0.1:{port}", "--threads", "1", "--save-dir", save,
                    "--tls-cert", cert("smarthost.pem"), "--tls-key", cert("smarthost.key"),
                    "--require-client-cert", client_name, "--client-ca", cert("ca.pem"), "--json"]
                   + list(extra), port=port)


def start_relay(port, tenants, *extra):
    return Process([RELAY, "--listen", f"127.0.0.1:{port}", "--threads", "2", "--tenants", tenants,
                    "--tls-cert", cert("relay.pem"), "--tls-key", cert("relay.key"),
                    "--hostname", "relay.test", "--drain-timeout", "5"] + list(extra), port=port,
                   banner="--proxy-protocol" not in extra)


class Setup:
    """A sink and a relay in front of it, torn down on exit."""

    def __init__(self, sink_extra=(), relay_extra=(), client_name=FABRIKAM_CERT, **fabrikam_extra):
        self.dir = tempfile.mkdtemp(prefix="sigrelay-relay-")
        self.save = os.path.join(self.dir, "saved")
        self.sink_port, self.relay_port = free_port(), free_port()
        self.tenants = tenants_file(self.dir, self.sink_port, **fabrikam_extra)
        self.sink = start_sink(self.sink_port, self.save, *sink_extra, client_name=client_name)
        try:
            self.relay = start_relay(self.relay_port, self.tenants, *relay_extra)
        except Exception:
            self.sink.kill()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.relay.kill()
        self.sink.kill()

    def saved(self, count, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            files = sorted(glob.glob(os.path.join(self.save, "*.eml")))
            if len(files) >= count or time.monotonic() > deadline:
                return [open(f, "rb").read() for f in files]
            time.sleep(0.05)

    def smtp(self, sni=RELAY_NAME):
        c = smtplib.SMTP("127.0.0.1", self.relay_port, local_hostname="exo.test", timeout=20)
        ctx = ssl.create_default_context(cafile=cert("ca.pem"))
        c._host = sni  # smtplib sends _host as SNI / verify name
        c.starttls(context=ctx)
        c.ehlo("exo.test")
        return c


def text_message(sender="jane.doe@fabrikam.com", subject="Quarterly numbers", body="Hi Bob,\n\nsee attached.\n"):
    m = email.message.EmailMessage(policy=email.policy.SMTP)
    m["From"] = sender
    m["To"] = "bob@example.net"
    m["Subject"] = subject
    m["Message-ID"] = f"<{time.time_ns()}@fabrikam.com>"
    m.set_content(body)
    return m


def html_message(sender="jane.doe@fabrikam.com"):
    m = text_message(sender, body="Hi Bob,\n\nplain part.\n")
    m.add_alternative("<html><body><p>Hi Bob,</p><p>html part.</p></body></html>\n", subtype="html")
    return m


def parse(raw):
    return email.message_from_bytes(raw, policy=email.policy.default)


@case
def swaks_through_the_relay_is_signed_and_stamped():
    if not SWAKS:
        raise AssertionError("swaks is not installed")
    with Setup() as s:
        r = subprocess.run([SWAKS, "--server", "127.0.0.1", "--port", str(s.relay_port), "--tls",
                            "--tls-verify", "--tls-ca-path", cert("ca.pem"), "--tls-sni", RELAY_NAME,
                            "--from", "jane.doe@fabrikam.com", "--to", "bob@example.net", "--ehlo", "exo.test",
                            "--header", "Subject: swaks via relay", "--body", "Hello from swaks."],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "250 2.0.0 OK queued as sink-" in r.stdout, "the 250 is not the smart host's own"
        [raw] = s.saved(1)
        assert raw.startswith(b"Received: from exo.test"), raw[:200]
        assert raw.count(b"\r\nSignatureContoso: true\r\n") == 1
        msg = parse(raw)
        body = msg.get_content()
        assert "Hello from swaks." in body and "Jane Doe" in body and "Chief Executive Officer" in body, body
        assert body.index("Hello from swaks.") < body.index("Jane Doe")
        assert b"\n" not in raw.replace(b"\r\n", b""), "bare LF in the relayed message"


@case
def multipart_alternative_signs_both_parts_once():
    with Setup() as s:
        with s.smtp() as c:
            c.send_message(html_message())
        [raw] = s.saved(1)
        msg = parse(raw)
        plain = msg.get_body(("plain",)).get_content()
        html = msg.get_body(("html",)).get_content()
        assert plain.count("Jane Doe") == 1 and html.count("Jane Doe") == 1, (plain, html)
        assert html.index("html part.") < html.index("Jane Doe") < html.index("</body>")


@case
def unknown_sender_gets_550_571():
    with Setup() as s:
        with s.smtp() as c:
            code, text = c.mail("mallory@example.org")
            assert code == 550 and text.startswith(b"5.7.1"), (code, text)
        assert s.saved(0, timeout=0.2) == []


@case
def xoorg_selects_the_tenant():
    with Setup() as s:
        with s.smtp() as c:
            c.ehlo("exo.test")
            assert c.has_extn("xoorg")
            code, _ = c.mail("someone@partner.example", ["XOORG=fabrikam.onmicrosoft.com"])
            assert code == 250, code
            c.rset()
            code, _ = c.mail("jane.doe@fabrikam.com", ["XOORG=unknown.onmicrosoft.com"])
            assert code == 550, "an unknown XOORG must not fall back to the sender's domain"


@case
def require_sni_and_tenant_guid():
    guid = "3b2a6d2e-0000-4000-8000-000000000001"
    with Setup(require={"sni": RELAY_NAME, "tenant_guid": guid}) as s:
        with s.smtp(sni="localhost") as c:
            code, text = c.mail("jane.doe@fabrikam.com")
            assert code == 550 and text.startswith(b"5.7.1"), (code, text)
        m = text_message()
        with s.smtp() as c:
            try:
                c.send_message(m)
                raise AssertionError("accepted without X-MS-Exchange-CrossTenant-Id")
            except smtplib.SMTPDataError as e:
                assert e.smtp_code == 550 and e.smtp_error.startswith(b"5.7.1"), e
        # A forged second copy beside the real one: refused, nothing relayed.
        forged = text_message()
        forged["X-MS-Exchange-CrossTenant-Id"] = guid
        forged["X-MS-Exchange-CrossTenant-Id"] = "3b2a6d2e-0000-4000-8000-00000000beef"
        with s.smtp() as c:
            try:
                c.send_message(forged)
                raise AssertionError("accepted with two different X-MS-Exchange-CrossTenant-Id")
            except smtplib.SMTPDataError as e:
                assert e.smtp_code == 550 and e.smtp_error.startswith(b"5.7.1"), e
        m["X-MS-Exchange-CrossTenant-Id"] = guid.upper()
        with s.smtp() as c:
            c.send_message(m)
        assert len(s.saved(1)) == 1
        time.sleep(0.3)
        assert len(s.saved(2, timeout=0.2)) == 1, "a refused message reached the smart host"


@case
def exchange_online_client_certificate_required():
    """--require-client-cert: only a client whose certificate chains to the
    CA and carries the name (Exchange Online's mail.protection.outlook.com)
    gets a transaction."""
    with Setup(relay_extra=("--require-client-cert", "mail.protection.outlook.com",
                            "--client-ca", cert("ca.pem"))) as s:
        def attempt(client_cert):
            ctx = ssl.create_default_context(cafile=cert("ca.pem"))
            if client_cert:
                ctx.load_cert_chain(cert(client_cert + ".pem"), cert(client_cert + ".key"))
            c = smtplib.SMTP("127.0.0.1", s.relay_port, local_hostname="exo.test", timeout=20)
            c._host = RELAY_NAME
            try:
                c.starttls(context=ctx)
                c.ehlo("exo.test")
                c.send_message(text_message())
                return "accepted"
            except (ssl.SSLError, smtplib.SMTPException, OSError) as e:
                return "refused: %r" % e
            finally:
                try:
                    c.close()
                except OSError:
                    pass
        for bad in (None, "rogue", "S5HG3DCG14"):  # none, other CA, other name
            r = attempt(bad)
            assert r.startswith("refused"), (bad, r)
        assert attempt("exo") == "accepted"
        assert len(s.saved(1)) == 1
        time.sleep(0.3)
        assert len(s.saved(2, timeout=0.2)) == 1, "a client without the certificate got a message through"
    r = subprocess.run([RELAY, "--tenants", tenants_file(tempfile.mkdtemp(), 1), "--listen",
                        f"127.0.0.1:{free_port()}", "--tls-cert", cert("relay.pem"), "--tls-key",
                        cert("relay.key"), "--require-client-cert", "mail.protection.outlook.com"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 64 and "--client-ca" in r.stderr, (r.returncode, r.stderr)


@case
def a_tls_close_notify_is_answered():
    with Setup() as s:
        raw = socket.create_connection(("127.0.0.1", s.relay_port), timeout=10)
        assert raw.recv(512).startswith(b"220")
        raw.sendall(b"EHLO exo.test\r\n")
        raw.recv(4096)
        raw.sendall(b"STARTTLS\r\n")
        assert raw.recv(512).startswith(b"220")
        tls = ssl.create_default_context(cafile=cert("ca.pem")).wrap_socket(raw, server_hostname=RELAY_NAME)
        tls.sendall(b"EHLO exo.test\r\n")
        assert tls.recv(4096).startswith(b"250")
        # Our close_notify must get the relay's in return (RFC 8446 §6.1):
        # unwrap() fails on a bare end of stream.
        plain = tls.unwrap()
        plain.close()


@case
def require_tls_and_allow_cidr():
    with Setup() as s:
        with smtplib.SMTP("127.0.0.1", s.relay_port, timeout=10) as c:
            c.ehlo("exo.test")
            code, text = c.mail("jane.doe@fabrikam.com")
            assert code == 530 and text.startswith(b"5.7.0"), (code, text)
    d = tempfile.mkdtemp()
    port = free_port()
    with Process([RELAY, "--listen", f"127.0.0.1:{port}", "--tenants", tenants_file(d, 1),
                  "--tls-cert", cert("relay.pem"), "--tls-key", cert("relay.key"),
                  "--allow-cidr", "40.107.0.0/16"], port=port):
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        assert raw.recv(512).startswith(b"554 5.7.1")


@case
def smart_host_down_gives_4yz_never_250():
    d = tempfile.mkdtemp()
    port = free_port()
    with Process([RELAY, "--listen", f"127.0.0.1:{port}", "--tenants", tenants_file(d, free_port()),
                  "--tls-cert", cert("relay.pem"), "--tls-key", cert("relay.key"), "--connect-timeout", "3"],
                 port=port):
        c = smtplib.SMTP("127.0.0.1", port, local_hostname="exo.test", timeout=20)
        c.starttls(context=ssl.create_default_context(cafile=cert("ca.pem")))
        c.ehlo("exo.test")
        code, text = c.mail("jane.doe@fabrikam.com")
        assert 400 <= code < 500 and text.startswith(b"4.4."), (code, text)


@case
def smart_host_refuses_the_tenant_certificate():
    with Setup(client_name="K7QW2PLM55.smtp.contososignatureservice.com") as s:
        with s.smtp() as c:
            code, text = c.mail("jane.doe@fabrikam.com")
            assert 400 <= code < 500, (code, text)


@case
def smart_host_replies_are_relayed_as_they_are():
    for fail_code in ("554", "451"):
        with Setup(sink_extra=("--fail-rate", "1", "--fail-code", fail_code)) as s:
            with s.smtp() as c:
                try:
                    c.send_message(text_message())
                    raise AssertionError("accepted")
                except smtplib.SMTPDataError as e:
                    assert e.smtp_code == int(fail_code), e


@case
def already_processed_message_passes_untouched():
    with Setup() as s:
        m = text_message()
        m["SignatureContoso"] = "true"
        original = m.as_bytes()
        with s.smtp() as c:
            c.sendmail("jane.doe@fabrikam.com", ["bob@example.net"], original)
        [raw] = s.saved(1)
        assert raw == original, "the loop guard must relay the message byte for byte"


@case
def nosig_rule_stamps_only():
    with Setup() as s:
        with s.smtp() as c:
            c.send_message(text_message(subject="[nosig] no signature please"))
        [raw] = s.saved(1)
        assert b"Jane Doe" not in raw and raw.count(b"SignatureContoso: true") == 1


@case
def data_path_to_a_smart_host_without_chunking():
    with Setup(sink_extra=("--no-chunking",)) as s:
        body = ".leading dot\n..two dots\n.\nlast\n"
        with s.smtp() as c:
            c.send_message(text_message(body=body))
        [raw] = s.saved(1)
        text = parse(raw).get_content().replace("\r\n", "\n")
        assert text.startswith(".leading dot\n..two dots\n.\nlast\n"), text


@case
def pipelined_bdat_client():
    with Setup() as s:
        raw = socket.create_connection(("127.0.0.1", s.relay_port), timeout=10)
        buf = b""

        def reply(sock):
            nonlocal buf
            while True:
                while b"\r\n" not in buf:
                    data = sock.recv(65536)
                    assert data, "closed"
                    buf += data
                line, buf = buf.split(b"\r\n", 1)
                if line[3:4] != b"-":
                    return line
        reply(raw)
        raw.sendall(b"EHLO exo.test\r\n")
        reply(raw)
        raw.sendall(b"STARTTLS\r\n")
        assert reply(raw).startswith(b"220")
        tls = ssl.create_default_context(cafile=cert("ca.pem")).wrap_socket(raw, server_hostname=RELAY_NAME)
        tls.sendall(b"EHLO exo.test\r\n")
        reply(tls)
        msg = b"From: jane.doe@fabrikam.com\r\nSubject: bdat\r\n\r\nchunked body\r\n"
        tls.sendall(b"MAIL FROM:<jane.doe@fabrikam.com>\r\nRCPT TO:<bob@example.net>\r\nRCPT TO:<carol@example.net>\r\n"
                    + b"BDAT %d LAST\r\n" % len(msg) + msg)
        replies = [reply(tls) for _ in range(4)]
        assert [r[:3] for r in replies] == [b"250"] * 4, replies
        [saved] = s.saved(1)
        assert b"chunked body" in saved and b"Jane Doe" in saved


@case
def blaster_thousand_messages_all_arrive_signed():
    with Setup(relay_extra=("--quiet",)) as s:
        r = subprocess.run([BLASTER, "--target", f"127.0.0.1:{s.relay_port}", "--connections", "20",
                            "--messages", "1000", "--size", "3000", "--from", "jane.doe@fabrikam.com",
                            "--starttls", "--ca", cert("ca.pem"), "--tls-name", RELAY_NAME, "--json"],
                           capture_output=True, text=True, timeout=120)
        out = json.loads(r.stdout)
        assert r.returncode == 0 and out["accepted"] == 1000, (out, r.stderr)
        saved = s.saved(1000, timeout=30)
        assert len(saved) == 1000
        assert all(m.count(b"SignatureContoso: true") == 1 and b"Jane Doe" in m for m in saved)


@case
def sighup_reloads_and_a_bad_file_keeps_the_old():
    with Setup() as s:
        with open(s.tenants) as f:
            conf = json.load(f)
        conf["tenants"][0]["processed_header"]["value"] = "reloaded"
        with open(s.tenants, "w") as f:
            json.dump(conf, f)
        s.relay.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        with s.smtp() as c:
            c.send_message(text_message())
        assert b"SignatureContoso: reloaded" in s.saved(1)[0]
        with open(s.tenants, "w") as f:
            f.write("{ not json")
        s.relay.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert "reload refused" in s.relay.stderr()
        with s.smtp() as c:
            c.send_message(text_message())
        assert any(b"SignatureContoso: reloaded" in m for m in s.saved(2)[1:])
        assert s.relay.stop() == 0


@case
def sighup_keeps_the_smart_host_connections_of_unchanged_tenants():
    mport = free_port()
    with Setup(relay_extra=("--threads", "1", "--metrics-listen", f"127.0.0.1:{mport}")) as s:
        def connects():
            return metric_sum(http_get(mport, "/metrics")[1], "sigrelay_outbound_connects_total")
        with s.smtp() as c:
            c.send_message(text_message())
        assert connects() == 1
        # The same file again, then one whose change does not touch the smart
        # host or its certificates: the pooled connection carries on.
        s.relay.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        with s.smtp() as c:
            c.send_message(text_message())
        with open(s.tenants) as f:
            conf = json.load(f)
        conf["tenants"][0]["processed_header"]["value"] = "reloaded"
        with open(s.tenants, "w") as f:
            json.dump(conf, f)
        s.relay.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        with s.smtp() as c:
            c.send_message(text_message())
        saved = s.saved(3)
        assert len(saved) == 3 and b"SignatureContoso: reloaded" in saved[2], saved
        assert connects() == 1, "a reload opened a new connection to an unchanged smart host"
        # A changed client certificate is a new destination: a new connection.
        shutil.copy(cert("S5HG3DCG14.pem"), os.path.join(s.dir, "client-copy.pem"))
        with open(os.path.join(s.dir, "client-copy.pem"), "a") as f:
            f.write("\n")
        conf["tenants"][0]["client_cert"] = os.path.join(s.dir, "client-copy.pem")
        with open(s.tenants, "w") as f:
            json.dump(conf, f)
        s.relay.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        with s.smtp() as c:
            c.send_message(text_message())
        assert len(s.saved(4)) == 4
        assert connects() == 2


@case
def a_tenant_certificate_without_its_certificate_domain_is_refused_at_load():
    d = tempfile.mkdtemp(prefix="sigrelay-cd-")
    path = tenants_file(d, 1, certificate_domain="K7QW2PLM55.smtp.contososignatureservice.com")
    r = subprocess.run([RELAY, "--tenants", path, "--listen", f"127.0.0.1:{free_port()}",
                        "--tls-cert", cert("relay.pem"), "--tls-key", cert("relay.key")],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 78 and "does not carry certificate_domain" in r.stderr, (r.returncode, r.stderr)
    path = tenants_file(tempfile.mkdtemp(prefix="sigrelay-cd-"), 1, client_key=cert("K7QW2PLM55.key"))
    r = subprocess.run([RELAY, "--tenants", path, "--listen", f"127.0.0.1:{free_port()}",
                        "--tls-cert", cert("relay.pem"), "--tls-key", cert("relay.key")],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 78 and "mismatch" in r.stderr, (r.returncode, r.stderr)


@case
def sigterm_exits_zero_after_draining():
    with Setup(sink_extra=("--delay-ms", "1000")) as s:
        c = s.smtp()
        c.ehlo("exo.test")
        c.mail("jane.doe@fabrikam.com")
        c.rcpt("bob@example.net")
        c.putcmd("data")
        assert c.getreply()[0] == 354
        c.send(b"Subject: drain\r\n\r\nbody\r\n.\r\n")
        time.sleep(0.2)
        s.relay.proc.send_signal(signal.SIGTERM)
        code, _ = c.getreply()
        assert code == 250, code
        assert s.relay.stop() == 0
        assert len(s.saved(1)) == 1


def http_get(port, path):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        while True:
            chunk = c.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


def metric_sum(text, name):
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + "{"))


def metric_value(text, name, labels):
    """The sample `name{labels}` exactly, or None."""
    for line in text.splitlines():
        if line.startswith(name + "{" + labels + "}"):
            return float(line.split()[-1])
    return None


@case
def per_tenant_metrics_and_a_reload_dropping_a_tenant():
    mport = free_port()
    contoso_port = free_port()
    with Setup(relay_extra=("--metrics-listen", f"127.0.0.1:{mport}")) as s:
        # Both tenants served; contoso's smart host is a closed port.
        tenants_file(s.dir, s.sink_port, contoso_port=contoso_port)
        s.relay.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        with s.smtp() as c:
            c.send_message(text_message())
            c.send_message(text_message(subject="[nosig] plain"))
            code, _ = c.mail("someone@contoso.com")
            assert code == 451, code  # no connection to contoso's smart host
        s.saved(2)
        _, text = http_get(mport, "/metrics")
        f = 'tenant="fabrikam"'
        assert metric_value(text, "sigrelay_messages_total", f + ',outcome="signed"') == 1, text
        assert metric_value(text, "sigrelay_messages_total", f + ',outcome="stamped"') == 1
        assert metric_value(text, "sigrelay_messages_total", f + ',outcome="refused"') == 0
        assert metric_value(text, "sigrelay_smart_host_replies_total", f + ',class="2xx"') == 6  # 2 x MAIL, RCPT, message
        assert metric_value(text, "sigrelay_smart_host_replies_total", f + ',class="5xx"') == 0
        assert "# TYPE sigrelay_smart_host_latency_seconds histogram" in text
        assert metric_value(text, "sigrelay_smart_host_latency_seconds_count", f) == 2
        assert metric_value(text, "sigrelay_smart_host_latency_seconds_bucket", f + ',le="+Inf"') == 2
        assert metric_value(text, "sigrelay_smart_host_latency_seconds_sum", f) > 0
        assert metric_value(text, "sigrelay_pool_connections", f + ',state="open"') >= 1
        assert metric_value(text, "sigrelay_messages_total", 'tenant="contoso",outcome="signed"') == 0
        assert metric_value(text, "sigrelay_messages_total", 'tenant="contoso",outcome="deferred"') == 1
        assert 'tenant="contoso"' in text
        # A reload without contoso: its series are gone, fabrikam's stay.
        tenants_file(s.dir, s.sink_port)
        s.relay.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        _, text = http_get(mport, "/metrics")
        assert 'tenant="contoso"' not in text, text
        assert metric_value(text, "sigrelay_messages_total", f + ',outcome="signed"') == 1
        assert s.relay.stop() == 0


@case
def metrics_and_healthz():
    mport = free_port()
    with Setup(relay_extra=("--metrics-listen", f"127.0.0.1:{mport}")) as s:
        assert http_get(mport, "/healthz") == (200, "ok\n")
        with s.smtp() as c:
            c.send_message(text_message())
            code, _ = c.mail("mallory@example.org")
            assert code == 550
        s.saved(1)
        status, text = http_get(mport, "/metrics")
        assert status == 200, status
        assert "# TYPE sigrelay_relayed_total counter" in text
        assert metric_sum(text, "sigrelay_relayed_total") == 1, text
        assert metric_sum(text, "sigrelay_signed_total") == 1
        assert metric_sum(text, "sigrelay_rejected_no_tenant_total") == 1
        assert metric_sum(text, "sigrelay_tls_handshakes_total") >= 1
        assert 'shard="1"' in text, "every shard reports"
        assert http_get(mport, "/nope")[0] == 404
        # At most 64 clients at once: silent ones hold their slot (for the
        # request timeout), the next is told 503 at once.
        idle = [socket.create_connection(("127.0.0.1", mport), timeout=5) for _ in range(64)]
        deadline = time.monotonic() + 5  # the relay accepts them at its own pace (sanitizers)
        while http_get(mport, "/healthz")[0] != 503:
            assert time.monotonic() < deadline, "a 65th client was served"
            time.sleep(0.1)
        for c in idle:
            c.close()
        time.sleep(0.3)
        assert http_get(mport, "/healthz") == (200, "ok\n")


@case
def proxy_protocol_gives_the_real_client():
    with Setup(relay_extra=("--proxy-protocol", "--proxy-trusted", "127.0.0.1/32",
                            "--allow-cidr", "40.107.0.0/16")) as s:
        # the real client is an Exchange Online address: allowed, and traced
        raw = socket.create_connection(("127.0.0.1", s.relay_port), timeout=10)
        raw.sendall(b"PROXY TCP4 40.107.1.2 127.0.0.1 56324 25\r\n")
        assert raw.recv(512).startswith(b"220"), "greeting after the PROXY header"
        raw.sendall(b"EHLO exo.test\r\n")
        assert b"STARTTLS" in raw.recv(4096)
        raw.sendall(b"STARTTLS\r\n")
        assert raw.recv(512).startswith(b"220")
        tls = ssl.create_default_context(cafile=cert("ca.pem")).wrap_socket(raw, server_hostname=RELAY_NAME)
        c = smtplib.SMTP()
        c.sock = tls
        c.file = None
        c.ehlo("exo.test")
        c.sendmail("jane.doe@fabrikam.com", ["bob@example.net"], text_message().as_bytes())
        [saved] = s.saved(1)
        assert b"[40.107.1.2]" in saved.split(b"\r\n\r\n")[0], saved[:300]
        # a client outside the allow-list, as the balancer reports it
        raw = socket.create_connection(("127.0.0.1", s.relay_port), timeout=10)
        raw.sendall(b"PROXY TCP4 10.9.9.9 127.0.0.1 1234 25\r\n")
        assert raw.recv(512).startswith(b"554 5.7.1")
        # no header at all: dropped without a greeting
        raw = socket.create_connection(("127.0.0.1", s.relay_port), timeout=10)
        raw.sendall(b"EHLO direct.test\r\n")
        try:
            assert raw.recv(512) == b"", "answered a client without a PROXY header"
        except ConnectionResetError:
            pass
        assert "no PROXY protocol header" in s.relay.stderr()


def connect_from(source_ip, port):
    """A loopback connection from another 127/8 address than the balancer's."""
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.settimeout(10)
    raw.bind((source_ip, 0))
    raw.connect(("127.0.0.1", port))
    return raw


@case
def proxy_header_from_an_untrusted_peer_is_refused():
    with Setup(relay_extra=("--proxy-protocol", "--proxy-trusted", "127.0.0.1/32",
                            "--allow-cidr", "40.107.0.0/16")) as s:
        # A peer that is not the balancer claims an Exchange Online address:
        # it is answered 554 5.7.1 on its real address, and its header never read.
        raw = connect_from("127.0.0.9", s.relay_port)
        raw.sendall(b"PROXY TCP4 40.107.1.1 127.0.0.1 40000 25\r\n"
                    b"EHLO spoof.test\r\nMAIL FROM:<ceo@fabrikam.com> XOORG=fabrikam.com\r\n")
        reply = b""
        try:
            while True:
                chunk = raw.recv(4096)
                if not chunk:
                    break
                reply += chunk
        except ConnectionResetError:
            pass
        assert reply.startswith(b"554 5.7.1") and b"127.0.0.9" in reply, reply
        assert b"250" not in reply, reply
        # The same header from the trusted balancer is believed.
        raw = socket.create_connection(("127.0.0.1", s.relay_port), timeout=10)
        raw.sendall(b"PROXY TCP4 40.107.1.1 127.0.0.1 40000 25\r\n")
        assert raw.recv(512).startswith(b"220"), "the balancer's header is honoured"
        raw.close()
        log = s.relay.stderr()
        assert "127.0.0.9" in log and "not in --proxy-trusted" in log, log
    assert not glob.glob(os.path.join(s.save, "*.eml")), "nothing was relayed for the spoofer"


@case
def proxy_protocol_without_trusted_balancers_refuses_to_start():
    d = tempfile.mkdtemp(prefix="sigrelay-proxy-")
    tenants = tenants_file(d, free_port())
    base = [RELAY, "--listen", f"127.0.0.1:{free_port()}", "--tenants", tenants,
            "--tls-cert", cert("relay.pem"), "--tls-key", cert("relay.key")]
    r = subprocess.run(base + ["--proxy-protocol"], capture_output=True, text=True, timeout=20)
    assert r.returncode == 64 and "--proxy-trusted" in r.stderr, (r.returncode, r.stderr)
    r = subprocess.run(base + ["--proxy-trusted", "10.0.0.0/8"], capture_output=True, text=True, timeout=20)
    assert r.returncode == 64 and "--proxy-protocol" in r.stderr, (r.returncode, r.stderr)
    r = subprocess.run(base + ["--proxy-protocol", "--proxy-trusted", "10.0.0.300/8"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 64 and "10.0.0.300" in r.stderr, (r.returncode, r.stderr)


@case
def blaster_counts_one_error_per_failed_connection():
    r = subprocess.run([BLASTER, "--target", f"127.0.0.1:{free_port()}", "--connections", "3",
                        "--messages", "3", "--json"], capture_output=True, text=True, timeout=30)
    out = json.loads(r.stdout)
    assert r.returncode != 0
    assert out["errors"] == 3 and out["connections"] == 3 and out["accepted"] == 0, out


if __name__ == "__main__":
    harness.run(5)
