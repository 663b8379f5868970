"""The admin pages (/preview, /tenants) on a running relay's metrics
listener, read by Debian's chromium, headless, through chromedriver
(python3-selenium): a screenshot, the display name rendered inside the
sandboxed iframe, and neither a hostile directory value nor a script in the
template running. A control page without the sandbox shows that the same
markup does run script there, so the check can fail.

usage: admin_browser_test.py SIGRELAY SINK BLASTER CERTS_DIR EXAMPLES_DIR OUT_DIR [case ...]"""
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse

import harness
from harness import case, free_port

with harness.helpers_only():
    import relay_test as rt  # tenants_file, start_relay, http_get: same argv

from relay_test import RELAY

OUT_DIR = os.path.abspath(sys.argv[6])
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

EVE = "Eve <script>document.documentElement.setAttribute('data-pwned','name')</script> & Co"
USERS = [
    {"email": "eve@fabrikam.com", "display_name": EVE,
     "title": "<img src=x onerror=\"document.documentElement.setAttribute('data-pwned','title')\">"},
    {"email": "jane.doe@fabrikam.com", "display_name": "Jane Doe", "title": "CEO"},
]
# A template that itself carries script: only the sandbox stops it.
TEMPLATE = """<p class="name">{{display_name}}</p><p class="title">{{title}}</p>
<img id="logo" src="{{img:logo}}" alt="Fabrikam">
<script>document.documentElement.setAttribute('data-pwned', 'template');</script>
<img src="x:broken" onerror="document.documentElement.setAttribute('data-pwned', 'onerror')">
"""


class AdminRelay:
    """A relay with the hostile directory and template, --metrics-listen PORT."""

    def __init__(self, metrics_arg=None):
        self.dir = tempfile.mkdtemp(prefix="sigrelay-admin-")
        with open(os.path.join(self.dir, "hostile-users.ndjson"), "w") as f:
            for u in USERS:
                f.write(json.dumps(u, ensure_ascii=False) + "\n")
        with open(os.path.join(self.dir, "hostile.html"), "w") as f:
            f.write(TEMPLATE)
        # The smart host is a closed port: the pages never need it.
        self.tenants = rt.tenants_file(
            self.dir, free_port(), directory_file="hostile-users.ndjson",
            templates={"default": {"html_file": "hostile.html", "text_file": "fabrikam/default.txt",
                                   "placement": "below_reply"}})
        self.port, self.mport = free_port(), free_port()
        self.relay = rt.start_relay(self.port, self.tenants, "--metrics-listen",
                                    metrics_arg or str(self.mport))

    def url(self, path):
        return f"http://127.0.0.1:{self.mport}{path}"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.relay.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1280,1000", "--no-first-run", "--disable-extensions"):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


def http_request(port, method, path):
    """Status and body of one request (Connection: close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode())
        data = b""
        while chunk := c.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def png_size(data):
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def pwned(driver):
    """What the hostile markup wrote on <html>, read through the DOM; None: no script ran."""
    return driver.find_element("tag name", "html").get_attribute("data-pwned")


@case
def bare_metrics_port_binds_loopback_only():
    with AdminRelay() as a:
        hex_port = f"{a.mport:04X}"
        listening = []
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table) as f:
                for line in f.readlines()[1:]:
                    local, state = line.split()[1], line.split()[3]
                    if state == "0A" and local.endswith(":" + hex_port):
                        listening.append(local)
        assert listening == ["0100007F:" + hex_port], listening  # 127.0.0.1 only
        status, body = rt.http_get(a.mport, "/healthz")
        assert status == 200, status
    helptext = subprocess.run([RELAY, "--help"], capture_output=True, text=True, timeout=10).stdout
    assert "a bare PORT binds 127.0.0.1 only" in " ".join(helptext.split()), helptext


@case
def preview_in_chromium_renders_the_signature_and_runs_no_script():
    os.makedirs(OUT_DIR, exist_ok=True)
    with AdminRelay() as a:
        d = browser()
        try:
            q = urllib.parse.urlencode([("from", "eve@fabrikam.com"), ("to", "bob@fabrikam.com"),
                                        ("subject", "Quarterly numbers")])
            d.get(a.url("/preview?" + q))
            assert d.title.startswith("Preview of eve@fabrikam.com"), d.title
            decision = d.find_element("id", "decision").text
            assert "fabrikam (fabrikam.com, fabrikam.onmicrosoft.com)" in decision, decision
            assert "rules[1] when always → template default" in decision, decision
            assert "embed: logo" in decision, decision
            assert EVE in d.find_element("id", "from").text
            shot = os.path.join(OUT_DIR, "admin-preview.png")
            d.save_screenshot(shot)
            with open(shot, "rb") as f:
                w, h = png_size(f.read())
            assert w >= 800 and h >= 600, (w, h)

            frame = d.find_element("id", "signature")
            assert frame.get_attribute("sandbox") == "", frame.get_attribute("sandbox")
            d.switch_to.frame(frame)
            # The display name is text inside the iframe, not markup.
            assert d.find_element("css selector", "p.name").text == EVE
            assert d.find_element("css selector", "p.title").text.startswith("<img src=x onerror=")
            # The logo came with the page (data: URL of the embedded bytes).
            logo = d.find_element("id", "logo")
            assert logo.get_attribute("src").startswith("data:image/png;base64,")
            assert int(logo.get_property("naturalWidth")) > 0, "the logo did not render"
            # The template's script is in the DOM, and did not run.
            assert len(d.find_elements("tag name", "script")) == 1
            assert pwned(d) is None, pwned(d)
            d.switch_to.default_content()
            assert pwned(d) is None, pwned(d)
            assert "Jane" not in d.page_source

            # Control: the same signature markup outside the sandbox and the
            # page's policy does run its script, so the checks above can fail.
            doc = frame.get_attribute("srcdoc")
            control = os.path.join(OUT_DIR, "admin-control.html")
            with open(control, "w") as f:
                f.write(doc)
            d.get("file://" + control)
            assert pwned(d) in ("template", "onerror"), pwned(d)
        finally:
            d.quit()


@case
def tenants_page_and_an_unknown_sender_in_chromium():
    with AdminRelay() as a:
        d = browser()
        try:
            d.get(a.url("/tenants"))
            section = d.find_element("id", "tenant-fabrikam").text
            assert "fabrikam.com, fabrikam.onmicrosoft.com" in section, section
            assert "S5HG3DCG14.smtp.contososignatureservice.com" in section, section
            assert "hostile-users.ndjson: 2 users" in section, section
            rules = [li.text for li in d.find_elements("css selector", "#tenant-fabrikam ol.rules li")]
            assert rules == ['rules[0] when subject contains "[nosig]" → no signature',
                             "rules[1] when always → template default"], rules

            d.get(a.url("/preview?from=nobody%40fabrikam.com"))
            assert "nobody@fabrikam.com is not in the directory of tenant fabrikam" in \
                d.find_element("id", "error").text
            status, body = rt.http_get(a.mport, "/preview?from=nobody%40fabrikam.com")
            assert status == 404, status
            status, _ = rt.http_get(a.mport, "/preview?from=x%40unknown.example")
            assert status == 404, status
            status, _ = rt.http_get(a.mport, "/preview")
            assert status == 400, status
            status, _ = rt.http_get(a.mport, "/nothing-here")
            assert status == 404, status
            status, _ = http_request(a.mport, "POST", "/preview?from=jane.doe%40fabrikam.com")
            assert status == 405, status
            status, body = http_request(a.mport, "HEAD", "/tenants")
            assert status == 200 and body == b"", (status, body[:80])
        finally:
            d.quit()


@case
def a_reload_shows_in_the_preview():
    with AdminRelay() as a:
        status, body = rt.http_get(a.mport, "/preview?from=jane.doe%40fabrikam.com")
        assert status == 200 and "Jane Doe" in body, status
        users = [dict(u) for u in USERS]
        users[1]["display_name"] = "Jane Doe-Smith"
        with open(os.path.join(a.dir, "hostile-users.ndjson"), "w") as f:
            for u in users:
                f.write(json.dumps(u) + "\n")
        a.relay.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            status, body = rt.http_get(a.mport, "/preview?from=jane.doe%40fabrikam.com")
            if "Jane Doe-Smith" in body:
                break
            time.sleep(0.1)
        assert "Jane Doe-Smith" in body, body[:400]


harness.run(6)
