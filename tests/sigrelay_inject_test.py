#!/usr/bin/env python3
"""End-to-end tests of sigrelay-inject on the examples, checked with Python's
email package. Usage: sigrelay_inject_test.py PATH/TO/sigrelay-inject EXAMPLES_DIR
(standard library only)."""

import base64
import email
import email.policy
import os
import re
import shutil
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

# Embedded signature images (docs/behaviour.md, Images): fabrikam's "logo".
HTML_BODY = "<html><body><p>Hi Bob,</p><p>the numbers are attached.</p></body></html>\r\n"
TOP = (
    "From: Jane Doe <jane.doe@fabrikam.com>\r\n"
    "To: Bob <bob@example.com>\r\n"
    "Subject: Quarterly numbers\r\n"
    "Message-ID: <img@fabrikam.com>\r\n"
    "MIME-Version: 1.0\r\n"
)
PLAIN_PART = (
    "Content-Type: text/plain; charset=utf-8\r\n"
    "\r\n"
    "Hi Bob,\r\n\r\nthe numbers are attached.\r\n"
)
HTML_PART = "Content-Type: text/html; charset=utf-8\r\n\r\n" + HTML_BODY
CHART = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAFAAH/iZk9HQAAAABJRU5ErkJggg=="
CHART_PART = (
    "Content-Type: image/png; name=\"chart.png\"\r\n"
    "Content-Disposition: inline; filename=\"chart.png\"\r\n"
    "Content-ID: <chart.png@01DC7E00>\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n" + CHART + "\r\n"
)
PDF_PART = (
    "Content-Type: application/pdf; name=\"numbers.pdf\"\r\n"
    "Content-Disposition: attachment; filename=\"numbers.pdf\"\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "JVBERi0xLjQKJcfsj6IKMSAwIG9iago8PD4+CmVuZG9iagp0cmFpbGVyCjw8Pj4KJSVFT0YK\r\n"
)


def multipart(subtype, boundary, *parts, params=""):
    """A multipart body part (Content-Type field, empty line, body parts)."""
    out = "Content-Type: multipart/%s; boundary=\"%s\"%s\r\n\r\n" % (subtype, boundary, params)
    for p in parts:
        out += "--%s\r\n%s" % (boundary, p)
    return out + "--%s--\r\n" % boundary


BARE_HTML = (
    TOP + "Content-Class: urn:content-classes:message\r\n"
    "Content-Type: text/html; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 7bit\r\n"
    "Content-Language: en-US\r\n"
    "X-Mailer: test\r\n"
    "\r\n" + HTML_BODY
)
ALTERNATIVE = TOP + multipart("alternative", "alt1", PLAIN_PART, HTML_PART)
RELATED = TOP + multipart("related", "rel1", HTML_PART.replace(
    "</p></body>", "</p><p><img src=\"cid:chart.png@01DC7E00\"></p></body>"), CHART_PART,
    params="; type=\"text/html\"")
OUTLOOK_RELATED = TOP + multipart(
    "related", "rel1",
    multipart("alternative", "alt1", PLAIN_PART, HTML_PART.replace(
        "</p></body>", "</p><p><img src=\"cid:chart.png@01DC7E00\"></p></body>")),
    CHART_PART, params="; type=\"multipart/alternative\"")
MIXED_HTML = TOP + multipart("mixed", "mix1", HTML_PART, PDF_PART)
MIXED_ALTERNATIVE = TOP + multipart("mixed", "mix1", multipart("alternative", "alt1", PLAIN_PART, HTML_PART),
                                    PDF_PART)
TWO_HTML = TOP + multipart("alternative", "alt1", HTML_PART, HTML_PART.replace("Hi Bob", "Hello Bob"))
CID_RE = re.compile(r"cid:([^\"'\s>]+)")


def logo():
    with open(os.path.join(EXAMPLES, "fabrikam", "logo.png"), "rb") as f:
        return f.read()


def shape(part):
    """The content-type tree: "multipart/mixed(text/html,application/pdf)"."""
    if part.is_multipart():
        return "%s(%s)" % (part.get_content_type(), ",".join(shape(p) for p in part.iter_parts()))
    return part.get_content_type()


def without_received(raw):
    """The message without its first header field, Received (it holds the time)."""
    m = re.match(rb"Received:[^\r]*\r\n(?:[ \t][^\r]*\r\n)*", raw)
    assert m, raw[:200]
    return raw[m.end():]


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


class ImageTest(unittest.TestCase):
    """fabrikam's templates show {{img:logo}}: embedded as a multipart/related
    image part (template default) or linked (template sales)."""

    def sign(self, message, sender="jane.doe@fabrikam.com", to=("bob@example.com",),
             queue_id="Q1a2b3c", extra=()):
        args = ["--from", sender] + [a for t in to for a in ("--to", t)] + list(extra)
        if queue_id is not None:
            args += ["--queue-id", queue_id]
        p = run(args, message)
        self.assertEqual(p.returncode, 0, p.stderr)
        return p

    def assert_embedded(self, msg, cid="logo.Q1a2b3c@localhost", html_parts=1):
        """One image part for `cid`, its bytes the logo's, and every cid: in
        the HTML resolving to a part; returns the image part."""
        images = [p for p in msg.walk() if p.get("Content-ID") == "<%s>" % cid]
        self.assertEqual(len(images), 1, shape(msg))
        img = images[0]
        self.assertEqual(img.get_content_type(), "image/png")
        self.assertEqual(img.get_param("name"), "logo.png")
        self.assertEqual(img.get_content_disposition(), "inline")
        self.assertEqual(img.get_filename(), "logo.png")
        self.assertEqual(img.get("Content-Transfer-Encoding"), "base64")
        self.assertEqual(img.get_content(), logo())
        lines = img.get_payload().splitlines()
        self.assertTrue(lines)
        self.assertTrue(all(len(l) <= 76 for l in lines), lines)
        self.assertEqual(len(lines[0]), 76)
        html = [p for p in msg.walk() if p.get_content_type() == "text/html"]
        self.assertEqual(len(html), html_parts)
        by_cid = {p.get("Content-ID"): p for p in msg.walk() if p.get("Content-ID")}
        for part in html:
            text = part.get_content()
            self.assertEqual(text.count("cid:" + cid), 1, text)
            for ref in CID_RE.findall(text):
                self.assertIn("<%s>" % ref, by_cid, "cid:%s resolves to no part" % ref)
        return img

    def test_bare_html_becomes_related(self):
        p = self.sign(BARE_HTML)
        self.assertIn(b"signed (text/html with 1 image)", p.stderr)
        msg = parse(p.stdout)
        self.assertEqual(shape(msg), "multipart/related(text/html,image/png)")
        self.assertEqual(msg.get_param("type"), "text/html")
        # The message's fields stay on top, its content fields move down.
        self.assertEqual([k for k in msg.keys()],
                         ["Received", "From", "To", "Subject", "Message-ID", "MIME-Version",
                          "Content-Class", "X-Mailer", "Content-Type", "SignatureContoso"])
        html, img = msg.get_payload()
        self.assertEqual(list(html.raw_items()), [("Content-Type", "text/html; charset=utf-8"),
                                        ("Content-Transfer-Encoding", "7bit"),
                                        ("Content-Language", "en-US")])
        self.assertIs(self.assert_embedded(msg), img)
        text = html.get_content()
        self.assertTrue(text.startswith("<html><body><p>Hi Bob,</p>"), text)
        self.assertEqual(text.count("Chief Executive Officer"), 1)

    def test_alternative_html_gets_related(self):
        msg = parse(self.sign(ALTERNATIVE).stdout)
        self.assertEqual(shape(msg),
                         "multipart/alternative(text/plain,multipart/related(text/html,image/png))")
        related = msg.get_payload()[1]
        self.assertEqual(related.get_param("type"), "text/html")
        self.assertIs(self.assert_embedded(msg), related.get_payload()[1])
        plain = msg.get_payload()[0].get_content()
        self.assertNotIn("cid:", plain)
        self.assertEqual(plain.count("Chief Executive Officer"), 1)

    def test_existing_related_takes_image_after_root(self):
        msg = parse(self.sign(RELATED).stdout)
        self.assertEqual(shape(msg), "multipart/related(text/html,image/png,image/png)")
        html, img, chart = msg.get_payload()
        self.assertIs(self.assert_embedded(msg), img)
        self.assertEqual(chart.get("Content-ID"), "<chart.png@01DC7E00>")
        self.assertEqual(chart.get_content(), base64.b64decode(CHART))
        self.assertEqual(CID_RE.findall(html.get_content()),
                         ["chart.png@01DC7E00", "logo.Q1a2b3c@localhost"])

    def test_outlook_related_alternative(self):
        msg = parse(self.sign(OUTLOOK_RELATED).stdout)
        self.assertEqual(shape(msg), "multipart/related(multipart/alternative(text/plain,text/html),"
                                     "image/png,image/png)")
        self.assertIs(self.assert_embedded(msg), msg.get_payload()[1])
        self.assertEqual(msg.get_payload()[2].get("Content-ID"), "<chart.png@01DC7E00>")

    def test_mixed_html_and_pdf(self):
        msg = parse(self.sign(MIXED_HTML).stdout)
        self.assertEqual(shape(msg),
                         "multipart/mixed(multipart/related(text/html,image/png),application/pdf)")
        self.assertIs(self.assert_embedded(msg), msg.get_payload()[0].get_payload()[1])
        pdf = msg.get_payload()[1]
        self.assertEqual(pdf.get_filename(), "numbers.pdf")
        self.assertEqual(pdf.get_content(), base64.b64decode(PDF_PART.split("\r\n\r\n")[1]))

    def test_mixed_alternative_and_attachment(self):
        msg = parse(self.sign(MIXED_ALTERNATIVE).stdout)
        self.assertEqual(shape(msg), "multipart/mixed(multipart/alternative(text/plain,"
                                     "multipart/related(text/html,image/png)),application/pdf)")
        self.assertIs(self.assert_embedded(msg),
                      msg.get_payload()[0].get_payload()[1].get_payload()[1])

    def test_two_html_parts_one_image(self):
        p = self.sign(TWO_HTML)
        self.assertIn(b"signed (text/html+text/html with 1 image)", p.stderr)
        msg = parse(p.stdout)
        self.assertEqual(shape(msg),
                         "multipart/alternative(multipart/related(text/html,image/png),text/html)")
        self.assert_embedded(msg, html_parts=2)

    def test_image_used_twice_one_part(self):
        with tempfile.TemporaryDirectory() as d:
            examples = os.path.join(d, "examples")
            shutil.copytree(EXAMPLES, examples)
            os.symlink(os.path.join(os.path.dirname(EXAMPLES), "certs"), os.path.join(d, "certs"))
            path = os.path.join(examples, "fabrikam", "default.html")
            with open(path, encoding="utf-8") as f:
                html = f.read()
            with open(path, "w", encoding="utf-8") as f:
                f.write(html + '<p><img src="{{img:logo}}" alt="again"></p>\n')
            with tempfile.NamedTemporaryFile("wb", suffix=".eml") as m:
                m.write(ALTERNATIVE.encode())
                m.flush()
                p = subprocess.run([INJECT, "--tenants", os.path.join(examples, "tenants.json"),
                                    "--from", "jane.doe@fabrikam.com", "--to", "bob@example.com",
                                    "--queue-id", "Q1a2b3c", m.name], capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(b"with 1 image)", p.stderr)
        msg = parse(p.stdout)
        self.assertEqual(shape(msg),
                         "multipart/alternative(text/plain,multipart/related(text/html,image/png))")
        html = msg.get_payload()[1].get_payload()[0].get_content()
        self.assertEqual(html.count("cid:logo.Q1a2b3c@localhost"), 2)
        images = [p for p in msg.walk() if p.get_content_type() == "image/png"]
        self.assertEqual(len(images), 1)
        self.assertEqual(images[0].get("Content-ID"), "<logo.Q1a2b3c@localhost>")
        self.assertEqual(images[0].get_content(), logo())

    def test_link_mode_for_sales_to_external(self):
        p = self.sign(ALTERNATIVE, sender="zoe.akesson@fabrikam.com")
        self.assertIn(b"template sales; signed (text/plain+text/html)\n", p.stderr)
        msg = parse(p.stdout)
        self.assertEqual(shape(msg), "multipart/alternative(text/plain,text/html)")
        html = msg.get_payload()[1].get_content()
        self.assertEqual(html.count('<img src="https://cdn.fabrikam.example/logo.png"'), 1, html)
        self.assertEqual(html.count("Spring offer"), 1)
        self.assertNotIn("cid:", html)
        self.assertNotIn(b"Content-ID", p.stdout)
        self.assertNotIn(b"image/png", p.stdout)

    def test_sales_to_internal_embeds(self):
        msg = parse(self.sign(ALTERNATIVE, sender="zoe.akesson@fabrikam.com",
                              to=("jane.doe@fabrikam.com",)).stdout)
        self.assertEqual(shape(msg),
                         "multipart/alternative(text/plain,multipart/related(text/html,image/png))")
        self.assert_embedded(msg)
        self.assertNotIn("cdn.fabrikam.example", msg.get_payload()[1].get_payload()[0].get_content())

    def test_plain_only_gets_no_image(self):
        p = self.sign(PLAIN)
        self.assertIn(b"signed (text/plain)\n", p.stderr)
        msg = parse(p.stdout)
        self.assertEqual(shape(msg), "text/plain")
        self.assertNotIn(b"cid:", p.stdout)
        self.assertNotIn(b"Content-ID", p.stdout)
        self.assertEqual(bodies(msg)[0][1].count("Chief Executive Officer"), 1)

    def test_auto_reply_gets_no_image(self):
        raw = ALTERNATIVE.replace("MIME-Version: 1.0\r\n",
                                  "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n")
        p = self.sign(raw)
        self.assertIn(b"stamped only", p.stderr)
        msg = parse(p.stdout)
        self.assertEqual(msg.get_all("SignatureContoso"), ["true"])
        self.assertEqual(shape(msg), "multipart/alternative(text/plain,text/html)")
        self.assertNotIn(b"cid:", p.stdout)
        self.assertNotIn(b"image/png", p.stdout)
        # Stamped: the input plus Received and the processed header.
        self.assertEqual(without_received(p.stdout),
                         raw.replace("\r\n\r\n", "\r\nSignatureContoso: true\r\n\r\n", 1).encode())

    def test_content_id_per_queue_id(self):
        ids = []
        for qid in ("Q1", "Q2", None, None):
            msg = parse(self.sign(ALTERNATIVE, queue_id=qid).stdout)
            images = [p for p in msg.walk() if p.get_content_type() == "image/png"]
            self.assertEqual(len(images), 1, shape(msg))
            cid = images[0].get("Content-ID")
            self.assertRegex(cid, r"^<logo\.[!-;=?-~]+@localhost>$")
            self.assertEqual(msg.get_payload()[1].get_payload()[0].get_content().count("cid:" + cid[1:-1]), 1)
            ids.append(cid)
        self.assertEqual(ids[:2], ["<logo.Q1@localhost>", "<logo.Q2@localhost>"])
        self.assertEqual(len(set(ids)), 4, ids)

    def decision(self, message, sender, to, queue_id="Q1a2b3c"):
        """(decision lines, message after "--") of --show-decision, checking the
        message equals the run without it (but for Received)."""
        p = self.sign(message, sender=sender, to=to, queue_id=queue_id, extra=["--show-decision"])
        head, sep, raw = p.stdout.partition(b"--\n")
        self.assertEqual(sep, b"--\n")
        self.assertTrue(raw.startswith(b"Received: "), raw[:100])
        plain = self.sign(message, sender=sender, to=to, queue_id=queue_id).stdout
        self.assertEqual(without_received(raw), without_received(plain))
        return head.decode("utf-8").splitlines(), raw

    def test_show_decision_embed(self):
        lines, raw = self.decision(ALTERNATIVE, "jane.doe@fabrikam.com", ["bob@example.com"])
        self.assertEqual(lines, [
            "tenant:     fabrikam (fabrikam.com, fabrikam.onmicrosoft.com)",
            "sender:     jane.doe@fabrikam.com (Jane Doe)",
            "recipients: external (bob@example.com); one group per transaction",
            "rule:       rules[2] when always",
            "template:   default (%s, %s)" % (os.path.join(EXAMPLES, "fabrikam", "default.html"),
                                              os.path.join(EXAMPLES, "fabrikam", "default.txt")),
            "placement:  below_reply",
            "images:     embed: logo (image/png, %d bytes)" % len(logo()),
            "outcome:    signed (text/plain+text/html with 1 image)",
        ])
        self.assert_embedded(parse(raw))

    def test_show_decision_link_and_internal(self):
        lines, raw = self.decision(ALTERNATIVE, "zoe.akesson@fabrikam.com", ["bob@example.com"])
        self.assertEqual(lines[2:], [
            "recipients: external (bob@example.com); one group per transaction",
            "rule:       rules[1] when department = Sales, recipients external",
            "template:   sales (%s, %s)" % (os.path.join(EXAMPLES, "fabrikam", "sales.html"),
                                            os.path.join(EXAMPLES, "fabrikam", "sales.txt")),
            "placement:  below_reply",
            "images:     link: logo (image/png, %d bytes, https://cdn.fabrikam.example/logo.png)"
            % len(logo()),
            "outcome:    signed (text/plain+text/html)",
        ])
        self.assertEqual(lines[1], "sender:     zoe.akesson@fabrikam.com (Zo\u00eb \u00c5kesson)")
        self.assertNotIn(b"image/png", raw)
        lines, raw = self.decision(ALTERNATIVE, "zoe.akesson@fabrikam.com", ["jane.doe@fabrikam.com"])
        self.assertEqual(lines[2:4], [
            "recipients: internal (jane.doe@fabrikam.com); one group per transaction",
            "rule:       rules[2] when always",
        ])
        self.assertEqual(lines[6:], ["images:     embed: logo (image/png, %d bytes)" % len(logo()),
                                     "outcome:    signed (text/plain+text/html with 1 image)"])
        self.assert_embedded(parse(raw))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    INJECT = os.path.abspath(sys.argv[1])
    EXAMPLES = os.path.abspath(sys.argv[2])
    unittest.main(argv=[sys.argv[0], "-v"] + sys.argv[3:])
