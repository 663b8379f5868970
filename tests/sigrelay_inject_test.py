#!/usr/bin/env python3
"""End-to-end tests of sigrelay-inject on the examples, checked with Python's
email package. Usage: sigrelay_inject_test.py PATH/TO/sigrelay-inject EXAMPLES_DIR
(standard library only)."""

import email
import email.policy
import os
import subprocess
import sys
import tempfile
import unittest

INJECT = None
EXAMPLES = None


def run(args, message=None, stdin_bytes=None):
    """Runs sigrelay-inject; `message` is written to a temporary file."""
    cmd = [INJECT, "--tenants", os.path.join(EXAMPLES, "tenants.json")] + args
    path = None
    if message is not None:
        fd, path = tempfile.mkstemp(suffix=".eml")
        with os.fdopen(fd, "wb") as f:
            f.write(message.encode("utf-8") if isinstance(message, str) else message)
        cmd.append(path)
    try:
        p = subprocess.run(cmd, input=stdin_bytes, capture_output=True, timeout=30)
    finally:
        if path:
            os.unlink(path)
    return p


def parse(raw):
    return email.message_from_bytes(raw, policy=email.policy.default)


def bodies(msg):
    """(content type, decoded text) of every text/* leaf."""
    out = []
    for part in msg.walk():
        if part.get_content_maintype() == "text":
            out.append((part.get_content_type(), part.get_content().replace("\r\n", "\n")))
    return out


PLAIN = (
    "From: Jane Doe <jane.doe@fabrikam.com>\n"
    "To: Bob <bob@example.com>\n"
    "Subject: Quarterly numbers\n"
    "Message-ID: <1@fabrikam.com>\n"
    "MIME-Version: 1.0\n"
    "Content-Type: text/plain; charset=utf-8\n"
    "\n"
    "Hi Bob,\n"
    "\n"
    "the numbers are attached.\n"
)

HTML_REPLY = (
    "From: Sam Sales <sam.sales@fabrikam.com>\r\n"
    "To: buyer@example.net\r\n"
    "Subject: RE: Offer\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/alternative; boundary=\"b1\"\r\n"
    "\r\n"
    "--b1\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "\r\n"
    "Thanks, here is the offer.\r\n"
    "\r\n"
    "-----Original Message-----\r\n"
    "From: Buyer <buyer@example.net>\r\n"
    "Subject: Offer\r\n"
    "\r\n"
    "Can you send an offer?\r\n"
    "--b1\r\n"
    "Content-Type: text/html; charset=utf-8\r\n"
    "\r\n"
    "<html><body><p>Thanks, here is the offer.</p>\r\n"
    "<div id=\"divRplyFwdMsg\"><hr><b>From:</b> Buyer &lt;buyer@example.net&gt;<br>"
    "<b>Subject:</b> Offer</div>\r\n"
    "<p>Can you send an offer?</p></body></html>\r\n"
    "--b1--\r\n"
)


class InjectTest(unittest.TestCase):
    def test_plain_message_signed_once(self):
        p = run(["--from", "jane.doe@fabrikam.com", "--to", "bob@example.com"], PLAIN)
        self.assertEqual(p.returncode, 0, p.stderr)
        raw = p.stdout
        self.assertNotIn(b"\n", raw.replace(b"\r\n", b""), "bare LF in output")
        msg = parse(raw)
        self.assertEqual(msg.get_all("SignatureContoso"), ["true"])
        self.assertTrue(msg.get_all("Received"))
        self.assertIn("sigrelay", msg.get_all("Received")[0])
        [(ctype, text)] = bodies(msg)
        self.assertEqual(ctype, "text/plain")
        self.assertEqual(text.count("Chief Executive Officer"), 1)
        self.assertEqual(text.count("\n-- \n"), 1)
        self.assertTrue(text.startswith("Hi Bob,"))
        self.assertIn("Mobile +1 425 555 0101", text)

    def test_html_reply_below_reply_sales_template(self):
        p = run(["--from", "sam.sales@fabrikam.com", "--to", "buyer@example.net"], HTML_REPLY)
        self.assertEqual(p.returncode, 0, p.stderr)
        msg = parse(p.stdout)
        self.assertEqual(msg.get_all("SignatureContoso"), ["true"])
        parts = dict(bodies(msg))
        self.assertEqual(set(parts), {"text/plain", "text/html"})
        html = parts["text/html"]
        self.assertEqual(html.count("Spring offer"), 1)
        # below_reply: above the quoted thread, under the new text.
        self.assertLess(html.index("Thanks, here is the offer."), html.index("Spring offer"))
        self.assertLess(html.index("Spring offer"), html.index("divRplyFwdMsg"))
        text = parts["text/plain"]
        self.assertEqual(text.count("Spring offer"), 1)
        self.assertLess(text.index("Spring offer"), text.index("-----Original Message-----"))

    def test_internal_recipient_gets_default_template(self):
        p = run(["--from", "sam.sales@fabrikam.com", "--to", "jane.doe@fabrikam.com"], HTML_REPLY)
        self.assertEqual(p.returncode, 0, p.stderr)
        html = dict(bodies(parse(p.stdout)))["text/html"]
        self.assertNotIn("Spring offer", html)
        self.assertEqual(html.count("Account Executive"), 1)

    def test_non_ascii_name_and_stdin(self):
        p = run(["--from", "Zoe.Akesson@Fabrikam.com", "--to", "x@fabrikam.com"],
                stdin_bytes=PLAIN.encode())
        self.assertEqual(p.returncode, 0, p.stderr)
        [(_, text)] = bodies(parse(p.stdout))
        self.assertIn("Zoë Åkesson", text)

    def test_nosig_subject_is_stamped_only(self):
        msg_text = PLAIN.replace("Subject: Quarterly numbers",
                                 "Subject: =?UTF-8?Q?=5Bnosig=5D_Gr=C3=BC=C3=9Fe?=")
        p = run(["--from", "jane.doe@fabrikam.com"], msg_text)
        self.assertEqual(p.returncode, 0, p.stderr)
        msg = parse(p.stdout)
        self.assertEqual(msg.get_all("SignatureContoso"), ["true"])
        [(_, text)] = bodies(msg)
        self.assertNotIn("Chief Executive Officer", text)
        self.assertIn(b"template null", p.stderr)

    def test_sender_missing_from_directory_is_stamped(self):
        p = run(["--from", "intern@fabrikam.com"], PLAIN)
        self.assertEqual(p.returncode, 0, p.stderr)
        msg = parse(p.stdout)
        self.assertEqual(msg.get_all("SignatureContoso"), ["true"])
        [(_, text)] = bodies(msg)
        self.assertNotIn("-- \n", text)

    def test_holiday_campaign_by_date(self):
        args = ["--from", "lee.gu@contoso.com", "--to", "friend@example.org"]
        p = run(args + ["--date", "2026-12-20"], PLAIN)
        self.assertEqual(p.returncode, 0, p.stderr)
        [(_, text)] = bodies(parse(p.stdout))
        self.assertIn("Season's greetings", text)
        p = run(args + ["--date", "2027-01-07"], PLAIN)
        self.assertEqual(p.returncode, 0, p.stderr)
        [(_, text)] = bodies(parse(p.stdout))
        self.assertNotIn("Season's greetings", text)
        self.assertIn("Director of Engineering", text)

    def test_already_processed_is_untouched(self):
        p = run(["--from", "jane.doe@fabrikam.com"], "SignatureContoso: true\n" + PLAIN)
        self.assertEqual(p.returncode, 0, p.stderr)
        msg = parse(p.stdout)
        self.assertEqual(len(msg.get_all("SignatureContoso")), 1)
        self.assertNotIn("Chief Executive Officer", bodies(msg)[0][1])

    def test_unknown_sender_exit_65(self):
        p = run(["--from", "someone@gmail.com"], PLAIN)
        self.assertEqual(p.returncode, 65)
        self.assertIn(b"unknown sender", p.stderr)
        self.assertEqual(p.stdout, b"")

    def test_unreadable_message_exit_66(self):
        p = run(["--from", "jane.doe@fabrikam.com", "/nonexistent/message.eml"])
        self.assertEqual(p.returncode, 66)
        p = run(["--from", "jane.doe@fabrikam.com", tempfile.gettempdir()])
        self.assertEqual(p.returncode, 66)

    def test_usage_exit_64(self):
        self.assertEqual(run([]).returncode, 64)  # no --from
        self.assertEqual(run(["--from", "a@b.c", "--bogus"]).returncode, 64)
        self.assertEqual(run(["--from", "a@b.c", "--date", "2026-02-30"]).returncode, 64)

    def test_out_file(self):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "out.eml")
            p = run(["--from", "jane.doe@fabrikam.com", "--out", out], PLAIN)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(p.stdout, b"")
            with open(out, "rb") as f:
                self.assertIn(b"SignatureContoso: true\r\n", f.read())

    def test_check(self):
        p = subprocess.run([INJECT, "--tenants", os.path.join(EXAMPLES, "tenants.json"), "--check"],
                           capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        with tempfile.TemporaryDirectory() as d:
            bad = os.path.join(d, "tenants.json")
            with open(os.path.join(EXAMPLES, "tenants.json"), encoding="utf-8") as f:
                text = f.read()
            with open(bad, "w", encoding="utf-8") as f:
                f.write(text.replace('"127.0.0.1:2526"', '"127.0.0.1"'))
            line = text[: text.index('"127.0.0.1:2526"')].count("\n") + 1
            p = subprocess.run([INJECT, "--tenants", bad, "--check"], capture_output=True, timeout=30)
            self.assertEqual(p.returncode, 78)
            self.assertIn(f"{bad}:{line}: tenants[0].smart_host".encode(), p.stderr)
            with open(bad, "w", encoding="utf-8") as f:
                f.write(text.replace('"tenants": [', '"tenants": [,'))
            p = subprocess.run([INJECT, "--tenants", bad, "--check"], capture_output=True, timeout=30)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn(f"{bad}:2: invalid JSON".encode(), p.stderr)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    INJECT = os.path.abspath(sys.argv[1])
    EXAMPLES = os.path.abspath(sys.argv[2])
    unittest.main(argv=[sys.argv[0], "-v"] + sys.argv[3:])
