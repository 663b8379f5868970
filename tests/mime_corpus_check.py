#!/usr/bin/env python3
"""Runs every message of a MIME corpus folder through mime_corpus_driver and
checks the injector's output with Python's own email parser (standard library
only), against the rules of docs/behaviour.md ("Signature injection").

usage: mime_corpus_check.py DRIVER DIR [--generate [--certs CERTS]] [--optional] [--image PNG]

  DIR          the folder of .eml files (searched recursively)
  --generate   first write the project's fixtures into DIR with
               tests/fixtures/make_fixtures.py (CERTS: scripts/gen-certs.sh
               output for the S/MIME fixtures); DIR must then hold a
               MANIFEST.tsv with an expected outcome for every file
  --optional   for the shared corpus, which a fresh clone does not have: DIR
               is $SIGRELAY_CORPUS when set, else the DIR given; when that
               folder does not exist the check is skipped (exit 77)
  --image PNG  the driver's HTML signature shows PNG as
               cid:logo.TEST@sigrelay.test and the injector embeds it
               (docs/behaviour.md, Images); checked as below

Without --optional a missing DIR is a failure, and SIGRELAY_CORPUS is not read.

Per file, for both placements (bottom, below_reply):
- the outcome (signed / stamped / untouched) is the one the rules give,
  derived here independently from Python's parse of the input (EXPECT below
  lists the few cases the rules cannot be derived for, KNOWN_ISSUES the
  injector bugs that are pinned until fixed); when DIR has a
  MANIFEST.tsv with an "expected" column (the fixtures' own), the driver's
  outcome and the derived one must both equal it, every .eml must have a row
  and every row a file;
- no bare CR or LF, no line over 998 octets that was not already in the input;
- the output parses to the same tree of content types;
- top-level header fields: Received first, then the input's fields in order
  (values unchanged, except Content-Type/-Transfer-Encoding of a signed
  top-level part; MIME-Version/CTE/Content-Type may be added), the processed
  header last and once;
- signed: SIGTOKEN appears exactly once in each signed part (decoded with its
  charset) and nowhere else; the part is its original text plus one signature
  block, placed by the bottom rule (text: at the end after "-- "; HTML: before
  the last </body>, else </html>, else at the end); with below_reply, right
  above the quoted thread when the manifest names where that starts ("-" in
  its below_reply column: no thread, so the bottom rule); every other leaf
  decodes to the same bytes;
- stamped: the output is the input plus exactly the two header fields;
- untouched (the processed header is already there, the loop guard): the
  output is the input, byte for byte.

With --image, additionally:
- signed with the signature in an HTML part: the HTML block ends with the
  driver's <img src="cid:logo.TEST@sigrelay.test" alt="logo">; exactly one
  part has Content-ID <logo.TEST@sigrelay.test>: image/png, name and
  Content-Disposition inline filename "logo.png", base64 in lines of at most
  76 characters decoding to the PNG's bytes; the cid: in every signed HTML
  part resolves to it; the reason ends in " with 1 image";
- the tree is the input's with that one change: when the first signed HTML
  part is the root of a multipart/related (itself, or through
  multipart/alternative parents, Outlook's related{alternative{plain, html},
  image...}), the image part right after that root; else a new
  multipart/related (type="text/html", only a Content-Type field) in the
  HTML part's place holding the HTML part and the image. For a whole-message
  HTML part the message's MIME content fields move into the HTML part, in
  order, and the others stay on top; every other leaf decodes as before;
- signed text only, stamped, untouched: no such image part, no new
  logo.TEST@sigrelay.test anywhere.
"""
import argparse
import codecs
import copy
import csv
import email
import email.errors
import email.policy
import email.utils
import json
import os
import re
import subprocess
import sys

TOKEN = 'SIGTOKEN-7f3a'
PROCESSED = 'X-Sigrelay-Test'
MARKER_ID = 'm-4c1d'  # the driver's marker_id
RECEIVED_START = b'Received: from corpus.test by sigrelay.test'
GENERATOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures', 'make_fixtures.py')
SKIP_LINE = ('mime_corpus: skipped: no corpus (set SIGRELAY_CORPUS, or put the shared corpus '
             'beside the checkout)')

# Files whose expected outcome the rules below cannot derive from Python's
# parse, with the reason.
EXPECT = {
    # RFC 1468: ISO-2022-JP text is back in ASCII (or JIS-Roman) at the end of
    # every line. This body ends still in JIS X 0208, where the signature
    # would go, which docs/behaviour.md stamps; Python decodes it anyway, and
    # where the signature goes is not modelled here.
    'charsets/iso-2022-jp-unshifted-end.eml': 'stamped',
    # Boundary "=20": the quoted-printable separator line "--=20" would be a
    # delimiter line (RFC 2046 §5.1.1), so the signature "would collide with
    # a multipart boundary" (docs/behaviour.md); the encoder's output is not
    # modelled here.
    'mixed/boundary-equals-qp-separator.eml': 'stamped',
}

# Injector bugs the files show, reported and not fixed: the check pins what
# the injector does today, says so on the file's "ok" line, and fails once
# the bug is fixed (then drop the entry, and the generator's KNOWN_BUGS one).
# file -> {'bug': what is wrong, and at most one of
#   'outcome': the outcome it gives instead of the derived one (signed: the
#              parts the rules select are the ones checked),
#   'placement': {content type: the text the below_reply signature precedes
#                instead of the manifest's anchor (None: the bottom rule)},
#   'processed_on_top': True — the processed header right after Received
#                instead of last}.
KNOWN_ISSUES = {
}

STAMP_TYPES = {
    'multipart/signed', 'multipart/encrypted', 'application/pkcs7-mime',
    'application/x-pkcs7-mime', 'multipart/report', 'text/calendar',
    'application/ms-tnef', 'application/vnd.ms-tnef',
}
KNOWN_CTE = {None, '7bit', '8bit', 'binary', 'quoted-printable', 'base64'}
BCHARS = re.compile(r"^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$")
OUTCOMES = ('signed', 'stamped', 'untouched')

SIG_LINES = ['Jos\u00e9 Example \u2014 Contoso', TOKEN]
HTML_BLOCK = re.compile(r'<div class="sigrelay-m-4c1d" data-sigrelay="m-4c1d">.*?' + TOKEN +
                        r'</p></div>', re.S)
# This sender's marker; a longer id (m-4c1d7) is another sender's.
MARKER_RE = re.compile(r'sigrelay-' + re.escape(MARKER_ID) + r'(?![A-Za-z0-9_.\-])', re.I)
PGP_ARMOUR = ('-----BEGIN PGP SIGNED MESSAGE-----', '-----BEGIN PGP MESSAGE-----')
MAX_DEPTH = 16              # multipart nesting levels
MAX_HEADER_BYTES = 1 << 20  # one header block
# RFC 2045 §5.1: type "/" subtype, tokens, comments allowed around them.
_TOKEN = r"[!#$%&'*+\-.^_`{|}~0-9A-Za-z]+"
_CFWS = r'(?:\s|\([^()]*\))*'
CONTENT_TYPE_RE = re.compile(_CFWS + _TOKEN + _CFWS + '/' + _CFWS + _TOKEN)
B64_ALPHABET = re.compile(rb'[A-Za-z0-9+/=]*')

# --image: what the driver puts in the HTML signature and the part it embeds.
IMAGE_CID = 'logo.TEST@sigrelay.test'
IMAGE_TAG = '<img src="cid:' + IMAGE_CID + '" alt="logo">'
IMAGE_FILENAME = 'logo.png'
HTML_BLOCK_IMAGE = re.compile(r'<div class="sigrelay-m-4c1d" data-sigrelay="m-4c1d">.*?' + TOKEN +
                              r'</p>' + re.escape(IMAGE_TAG) + r'</div>', re.S)
# The fields that move from a whole-message HTML part into the part below the
# new multipart/related (src/mime/related_parts.cpp): RFC 2045 §9, RFC 2183,
# RFC 3282, RFC 2557, RFC 1864.
CONTENT_FIELDS = {'content-type', 'content-transfer-encoding', 'content-disposition',
                  'content-description', 'content-id', 'content-language',
                  'content-location', 'content-base', 'content-md5'}


def crlf(data):
    return re.sub(rb'\r\n|\r|\n', b'\r\n', data)


def parse(data):
    return email.message_from_bytes(data, policy=email.policy.compat32)


def tree(msg):
    out = [msg.get_content_type()]
    if msg.is_multipart():
        out.append([tree(p) for p in msg.get_payload()])
    return out


def leaves(msg, path=()):
    """(path, part) for every non-multipart part, message/* included as leaves."""
    if msg.is_multipart() and not msg.get_content_type().startswith('message/'):
        for i, p in enumerate(msg.get_payload()):
            yield from leaves(p, path + (i,))
    else:
        yield path, msg


def walk_depth(msg, depth=0):
    """(part, nesting depth) for the parts of the body structure, not
    descending into message/* parts."""
    yield msg, depth
    if msg.is_multipart() and not msg.get_content_type().startswith('message/'):
        for p in msg.get_payload():
            yield from walk_depth(p, depth + 1)


def cte(p):
    v = p.get('content-transfer-encoding')
    return v.strip().lower() if v else None


def select(p, path=()):
    """The parts to sign: every text alternative of multipart/alternative; the
    root (first) body part of other multiparts, for multipart/related the one
    its start parameter names (RFC 2387 §3.2); never attachments."""
    if (p.get('content-disposition') or '').split(';')[0].strip().lower() == 'attachment':
        return []
    ct = p.get_content_type()
    if p.is_multipart() and ct.startswith('multipart/'):
        kids = p.get_payload()
        if not kids:
            return []
        if ct == 'multipart/alternative':
            out = []
            for i, k in enumerate(kids):
                if k.is_multipart() or k.get_content_type() in ('text/plain', 'text/html'):
                    out += select(k, path + (i,))
            return out
        root = 0
        start = p.get_param('start') if ct == 'multipart/related' else None
        if start:
            if isinstance(start, tuple):  # RFC 2231 form
                start = email.utils.collapse_rfc2231_value(start)
            start = start.strip()
            for i, k in enumerate(kids):
                if (k.get('content-id') or '').strip() == start:
                    root = i
        return select(kids[root], path + (root,))
    if ct in ('text/plain', 'text/html'):
        return [path]
    return []


def charset_of(p):
    cs = p.get_content_charset()
    return cs if cs else 'us-ascii'  # RFC 2045 §5.2


def known_charset(cs):
    try:
        codecs.lookup(cs)
        return True
    except LookupError:
        return False


def ascii_compatible(cs):
    """Whether printable ASCII comes out of the charset as the same bytes (not
    so for UTF-16/32, UTF-7, EBCDIC): only such text can be edited in place."""
    probe = '\t\r\n' + ''.join(map(chr, range(0x20, 0x7f)))
    try:
        return probe.encode(cs) == probe.encode('ascii')
    except (LookupError, UnicodeEncodeError):
        return False


def strict_base64(data):
    """RFC 2045 §6.8 alphabet and padding only; whitespace between. Decoders
    may skip other characters, but then nobody can say what the text was."""
    data = re.sub(rb'[ \t\r\n]', b'', data)
    if not B64_ALPHABET.fullmatch(data):
        return False
    return all(len(q) % 4 != 1 for q in data.split(b'='))


def holds_signature(text, html):
    """Whether this sender's signature is already in the (quoted) thread: the
    HTML marker, or the text signature however a client re-quoted, re-wrapped
    or re-indented it."""
    if html:
        return bool(MARKER_RE.search(text))

    def squash(s):
        return ''.join(re.sub(r'[ \t]', '', l.lstrip('> \t')) for l in s.splitlines())
    return squash('\n'.join(SIG_LINES)) in squash(text)


def body_stamp_reason(p):
    """Why a part chosen for signing cannot take the signature, or None."""
    if cte(p) not in KNOWN_CTE:
        # RFC 2049 §2 item 6: an unknown encoding is application/octet-stream.
        return 'unknown Content-Transfer-Encoding'
    html = p.get_content_type() == 'text/html'
    if cte(p) == 'base64' and not strict_base64(p.get_payload(decode=False).encode('ascii', 'replace')):
        return 'invalid base64'
    data = p.get_payload(decode=True) or b''
    cs = charset_of(p)
    if known_charset(cs) and not ascii_compatible(cs):
        return 'charset not ASCII-compatible'
    if not html:
        # Text is decoded and re-encoded in its charset, or as UTF-8 when the
        # charset cannot hold the signature: either needs a charset we read,
        # and re-encoding needs a body that is valid in it.
        if not known_charset(cs):
            return 'unknown charset'
        try:
            '\n'.join(SIG_LINES).encode(cs)
        except UnicodeEncodeError:
            try:
                data.decode(cs)
            except UnicodeDecodeError:
                return 'body not valid in its charset, cannot become UTF-8'
    text = data.decode(cs if known_charset(cs) else 'latin-1', errors='replace')
    if any(a in text for a in PGP_ARMOUR):
        return 'inline OpenPGP (RFC 4880 §7): editing breaks it'
    if holds_signature(text, html):
        return 'thread already holds this sender\'s signature'
    return None


def auto_submitted(msg):
    """RFC 3834 §5: Auto-Submitted other than "no"; also the older
    Precedence: auto_reply, X-Autoreply and X-Autorespond. Not
    X-Auto-Response-Suppress: it asks recipients not to answer automatically
    (MS-OXCMAIL §2.1.3.2.20) and Outlook sets it on mail people write."""
    def token(name, default):
        v = str(msg.get(name) or default).strip().lower()
        return re.split(r'[ \t;(]', v, maxsplit=1)[0]
    return token('auto-submitted', 'no') != 'no' or token('precedence', '') == 'auto_reply' \
        or any(msg.get(h) is not None and token(h, '') not in ('no', 'false')
               for h in ('x-autoreply', 'x-autorespond'))


def header_block_size(raw):
    """Bytes of the top-level header block with its empty line."""
    if raw.startswith(b'\r\n'):
        return 0
    at = raw.find(b'\r\n\r\n')
    return len(raw) if at < 0 else at + 4


def unit_path(msg):
    """The part the injector holds to sign (docs/behaviour.md, Signature
    injection): down the first part of mixed, related and other multiparts
    to a text body, or a multipart/alternative (or a multipart/related with a
    start parameter) as a whole. (path, True) when one is found, else the
    path of the part where the descent ends, with False."""
    path, p = (), msg
    while True:
        if (p.get('content-disposition') or '').split(';')[0].strip().lower() == 'attachment':
            return path, False
        ct = p.get_content_type()
        if not p.is_multipart():
            return path, ct in ('text/plain', 'text/html')
        if not ct.startswith('multipart/'):
            return path, False
        if ct == 'multipart/alternative' or (ct == 'multipart/related' and p.get_param('start')):
            return path, True
        kids = p.get_payload()
        if not kids:
            return path, False
        path, p = path + (0,), kids[0]


def seen_parts(msg):
    """(part, depth) for the parts the decision rests on: the message streams,
    so what follows the end of the held part is relayed without being looked
    at. Those are the ancestors of the held part (their close delimiter, which
    comes after it, excepted) and the held part with everything in it."""
    path, _ = unit_path(msg)
    p = msg
    for depth, i in enumerate(path):
        # A later sibling means a delimiter ended the held part: a missing
        # close delimiter further on is not seen. With none, the held part
        # ends where the message does, and so is known to be unterminated.
        yield AncestorView(p, len(p.get_payload()) > i + 1), depth
        p = p.get_payload()[i]
    yield from walk_depth(p, len(path))


class AncestorView:
    """A multipart above the held part, with its defects as far as they can be
    known at the end of the held part."""
    def __init__(self, p, ended_before_close):
        self._p = p
        self.defects = [d for d in p.defects
                        if not (ended_before_close and
                                isinstance(d, email.errors.CloseBoundaryNotFoundDefect))]

    def __getattr__(self, name):
        return getattr(self._p, name)


def expected(rel, msg, raw):
    """('signed', [paths]), ('stamped', []) or ('untouched', [])."""
    if msg.get(PROCESSED) is not None:
        return 'untouched', []  # the loop guard
    if rel in EXPECT:
        return EXPECT[rel], []
    pinned = KNOWN_ISSUES.get(rel, {}).get('outcome')
    if pinned:
        return pinned, (select(msg) if pinned == 'signed' else [])
    if auto_submitted(msg):
        return 'stamped', []
    if str(msg.get('x-ms-tnef-correlator') or '').strip():
        # Exchange names the TNEF attachment here (and sends the field empty
        # on other mail): Outlook shows the TNEF body, not the MIME text.
        return 'stamped', []
    if not raw.startswith(b'\r\n') and b'\r\n\r\n' not in raw:
        # RFC 5322 §2.1: the body follows an empty line; without one there is
        # no body (Python reads a header block alone without a defect).
        return 'stamped', []
    if header_block_size(raw) > MAX_HEADER_BYTES:
        return 'stamped', []  # the top-level header block only
    for p, depth in seen_parts(msg):
        if p.get_content_maintype() == 'multipart' and depth >= MAX_DEPTH:
            return 'stamped', []
        ct = p.get('content-type')
        if ct is not None and not CONTENT_TYPE_RE.match(str(ct)):
            return 'stamped', []  # unparsable: RFC 2045 §5.2 reads it as text/plain
        if p.get_content_type() in STAMP_TYPES:
            return 'stamped', []
        if p.defects:
            return 'stamped', []
        if len(p.get_all('content-type') or []) > 1 or \
                len(p.get_all('content-transfer-encoding') or []) > 1:
            return 'stamped', []  # which one counts differs between readers
        if p.get_content_maintype() == 'multipart':
            b = p.get_param('boundary')
            b = email.utils.collapse_rfc2231_value(b) if b else None
            if not b or not BCHARS.match(b):
                return 'stamped', []
    unit, found = unit_path(msg)
    paths = [unit + p for p in select(part_at(msg, unit))] if found else []
    if not paths:
        return 'stamped', []
    for path in paths:
        if body_stamp_reason(part_at(msg, path)):
            return 'stamped', []
    return 'signed', paths


def part_at(msg, path):
    for i in path:
        msg = msg.get_payload()[i]
    return msg


def decoded_text(p):
    data = p.get_payload(decode=True) or b''
    cs = p.get_content_charset() or 'us-ascii'
    try:
        return data.decode(cs)
    except (LookupError, UnicodeDecodeError):
        return data.decode('latin-1')


def html_bottom(orig):
    low = orig.lower()
    for tag in ('</body', '</html'):
        at = low.rfind(tag)
        if at >= 0:
            return at
    return len(orig)


def insertions(text, orig, ctype, html_block=HTML_BLOCK):
    """(offset in orig, form) for every way `text` is `orig` with exactly one
    signature block inserted; form is 'bottom' or 'reply' for text/plain
    (the reply form leaves the "-- " separator out, RFC 3676 §4.3 readers
    would take the whole thread below it as signature), None for HTML."""
    out = []
    if ctype == 'text/html':
        for m in html_block.finditer(text):
            if text[:m.start()] + text[m.end():] == orig:
                out.append((m.start(), None))
        return out
    for nl in ('\r\n', '\n'):
        sig = nl.join(SIG_LINES)
        forms = [('-- ' + nl + sig + nl, 'bottom'), (nl + '-- ' + nl + sig, 'bottom'),
                 (sig + nl + nl, 'reply')]
        if orig == '':
            # An empty body right before a delimiter: the last line end
            # belongs to the delimiter (RFC 2046 §5.1.1).
            forms.append(('-- ' + nl + sig, 'bottom'))
        for block, form in forms:
            at = text.find(block)
            while at >= 0:
                if text[:at] + text[at + len(block):] == orig:
                    out.append((at, form))
                at = text.find(block, at + 1)
    return out


def placed(found, orig, ctype, mode, anchor, have_manifest):
    """Whether one of the insertions follows the placement rule."""
    for at, form in found:
        if ctype == 'text/html':
            bottom = at == html_bottom(orig)
            reply_ok = at < len(orig) and orig[at] == '<'
        else:
            bottom = form == 'bottom' and at == len(orig)
            reply_ok = form == 'reply' and (at == 0 or orig[at - 1] == '\n')
        if mode == 'bottom' or (have_manifest and anchor is None):
            if bottom:
                return True
        elif anchor is not None:
            if reply_ok and orig[at:].startswith(anchor):
                return True
        elif bottom or reply_ok:  # no manifest: the thread start is not known here
            return True
    return False


def header_names(msg):
    return [(k.lower(), v) for k, v in msg.items()]


def check_headers(inp, out, top_signed, processed_on_top=False, moved=False):
    """moved: the message was a text/html part that became the root of a new
    multipart/related, its MIME content fields now in the HTML part."""
    errs = []
    names = header_names(out)
    if not names or names[0][0] != 'received' or 'corpus.test' not in names[0][1]:
        errs.append('Received is not the first field')
    if processed_on_top:
        if len(names) > 1 and names[1][0] == PROCESSED.lower():
            names = names[:1] + names[2:] + names[1:2]
        else:
            errs.append('processed header not right after Received (header block over the limit)')
    if [n for n, _ in names].count(PROCESSED.lower()) != 1 or names[-1][0] != PROCESSED.lower():
        errs.append('processed header missing, repeated or not last')
    rest = names[1:-1]
    in_names = header_names(inp)
    in_set = {n for n, _ in in_names}
    addable = {'mime-version', 'content-transfer-encoding', 'content-type'}
    if moved:
        # One new Content-Type (the related) replaces the moved fields.
        if [n for n, _ in rest].count('content-type') != 1:
            errs.append('not one Content-Type on top of the new multipart/related')
        in_names = [(n, v) for n, v in in_names if n not in CONTENT_FIELDS]
        in_set = {n for n, _ in in_names}
        addable = {'mime-version', 'content-type'}
    rest = [(n, v) for n, v in rest if not (n in addable and n not in in_set)]
    if [n for n, _ in rest] != [n for n, _ in in_names]:
        errs.append('header fields changed: %s' % [n for n, _ in rest])
    else:
        for (n, v), (_, w) in zip(rest, in_names):
            if v != w and not (top_signed and n in ('content-type', 'content-transfer-encoding')):
                errs.append('value of %s changed' % n)
    if inp.get_unixfrom() != out.get_unixfrom():
        errs.append('mbox From_ line changed')
    return errs


def check_moved_fields(inp, html_part):
    """The whole-message HTML part's content fields, now the HTML part's own:
    in their order, values unchanged but for the signer's Content-Type and
    Content-Transfer-Encoding (which it may add at the end)."""
    want = [(n, v) for n, v in header_names(inp) if n in CONTENT_FIELDS]
    got = header_names(html_part)
    if len(got) == len(want) + 1 and got[-1][0] == 'content-transfer-encoding' and \
            'content-transfer-encoding' not in {n for n, _ in want}:
        got = got[:-1]
    if [n for n, _ in got] != [n for n, _ in want]:
        return ['HTML part fields %s, expected the moved %s'
                % ([n for n, _ in header_names(html_part)], [n for n, _ in want])]
    return ['value of %s changed in the moved fields' % n for (n, v), (_, w) in zip(got, want)
            if v != w and n not in ('content-type', 'content-transfer-encoding')]


def related_root(p):
    """Index of the root of multipart/related `p` (RFC 2387 §3.2), as select()."""
    root = 0
    start = p.get_param('start')
    if start:
        if isinstance(start, tuple):
            start = email.utils.collapse_rfc2231_value(start)
        start = start.strip()
        for i, k in enumerate(p.get_payload()):
            if (k.get('content-id') or '').strip() == start:
                root = i
    return root


def image_plan(msg, html):
    """Where the image goes for the first signed HTML part at path `html`:
    ('insert', related path, index) when the HTML is the root of a
    multipart/related, itself or through multipart/alternative parents; else
    ('wrap', html): a new multipart/related takes the HTML part's place."""
    c = html
    while c:
        parent = part_at(msg, c[:-1])
        ct = parent.get_content_type()
        if ct == 'multipart/related' and parent.is_multipart():
            root = related_root(parent)
            return ('insert', c[:-1], root + 1) if root == c[-1] else ('wrap', html)
        if ct != 'multipart/alternative':
            break
        c = c[:-1]
    return ('wrap', html)


def map_path(pth, plan):
    """The output path of the input part at `pth` (None plan: unchanged)."""
    if plan is None:
        return pth
    if plan[0] == 'wrap':
        return pth + (0,) if pth == plan[1] else pth
    rel, k = plan[1], plan[2]
    n = len(rel)
    if len(pth) > n and pth[:n] == rel and pth[n] >= k:
        return pth[:n] + (pth[n] + 1,) + pth[n + 1:]
    return pth


def image_path(plan):
    return plan[1] + (1,) if plan[0] == 'wrap' else plan[1] + (plan[2],)


def tree_with_image(t, plan):
    """tree() of the input with the planned image part (and wrapper)."""
    t = copy.deepcopy(t)
    where = plan[1]
    if plan[0] == 'wrap' and where == ():
        return ['multipart/related', [t, ['image/png']]]
    node = t
    for i in where[:-1] if plan[0] == 'wrap' else where:
        node = node[1][i]
    if plan[0] == 'wrap':
        node[1][where[-1]] = ['multipart/related', [node[1][where[-1]], ['image/png']]]
    else:
        node[1].insert(plan[2], ['image/png'])
    return t


def image_parts(msg):
    """Every part (message/* attachments included) with the driver's Content-ID."""
    return [p for p in msg.walk() if (p.get('content-id') or '').strip() == '<%s>' % IMAGE_CID]


def check_image(out, plan, html_out_paths, png):
    """The embedded image part and where it sits."""
    errs = []
    found = image_parts(out)
    if len(found) != 1:
        return ['%d parts with Content-ID <%s>, expected 1' % (len(found), IMAGE_CID)]
    img = found[0]
    at = image_path(plan)
    if part_at(out, at) is not img:
        errs.append('image part not at %s' % (at,))
    if img.get_content_type() != 'image/png':
        errs.append('image part is %s' % img.get_content_type())
    if img.get_param('name') != IMAGE_FILENAME:
        errs.append('image part name %r' % (img.get_param('name'),))
    disp = (img.get('content-disposition') or '').split(';')[0].strip().lower()
    if disp != 'inline' or img.get_param('filename', header='content-disposition') != IMAGE_FILENAME:
        errs.append('image part disposition %r' % (img.get('content-disposition'),))
    if cte(img) != 'base64':
        errs.append('image part encoding %r' % (cte(img),))
    raw = img.get_payload(decode=False)
    if not isinstance(raw, str):
        errs.append('image part is not a leaf')
        return errs
    lines = raw.rstrip('\r\n').split('\n')
    if any(len(l.rstrip('\r')) > 76 for l in lines):
        errs.append('image base64 line over 76 characters')
    if not strict_base64(raw.encode('ascii', 'replace')):
        errs.append('image part is not strict base64')
    if img.get_payload(decode=True) != png:
        errs.append('image part does not decode to the PNG\'s bytes')
    # Beside the HTML: its parent is the multipart/related whose root is the
    # first signed HTML part, or a multipart/alternative holding it.
    rel = at[:-1]
    related = part_at(out, rel)
    if related.get_content_type() != 'multipart/related':
        errs.append('image part in %s, not multipart/related' % related.get_content_type())
    else:
        c = html_out_paths[0]
        while len(c) > len(rel) + 1 and part_at(out, c[:-1]).get_content_type() == \
                'multipart/alternative':
            c = c[:-1]
        if c[:-1] != rel or related_root(related) != c[-1]:
            errs.append('image part not in the multipart/related holding the HTML as its root')
    if plan[0] == 'wrap':
        if related.get_param('type') != 'text/html':
            errs.append('new multipart/related type %r' % (related.get_param('type'),))
        if rel != () and [n for n, _ in header_names(related)] != ['content-type']:
            errs.append('new multipart/related has fields %s' % related.keys())
    # RFC 2392: the cid: URL names the part with that Content-ID, message-wide.
    for pth in html_out_paths:
        refs = re.findall(r'cid:([^"\'\s>]+)', decoded_text(part_at(out, pth)))
        if IMAGE_CID not in refs:
            errs.append('no cid:%s in HTML part %s' % (IMAGE_CID, pth))
    return errs


def check_lines(inp_raw, out_raw):
    errs = []
    if re.search(rb'\r(?!\n)|(?<!\r)\n', out_raw):
        errs.append('bare CR or LF in output')
    long_in = {l for l in inp_raw.split(b'\r\n') if len(l) > 998}
    for l in out_raw.split(b'\r\n'):
        if len(l) > 998 and l not in long_in:
            errs.append('new line over 998 octets (%d)' % len(l))
            break
    return errs


def check_no_image(inp_raw, out_raw, out):
    """Nothing of the image where no HTML part took the signature."""
    errs = []
    if image_parts(out):
        errs.append('image part added')
    if out_raw.count(IMAGE_CID.encode()) != inp_raw.count(IMAGE_CID.encode()):
        errs.append('%s added' % IMAGE_CID)
    return errs


def check_one(driver, path, rel, mode, spec, png=None, png_path=None):
    """Errors for one file in one placement; spec: its manifest row or None;
    png: the image's bytes with --image (png_path: its file), else None."""
    inp_raw = crlf(open(path, 'rb').read())
    r = subprocess.run([driver, path, mode] + ([png_path] if png is not None else []),
                       capture_output=True, timeout=60)
    if r.returncode != 0:
        return ['driver exit %d: %s' % (r.returncode, r.stderr.decode(errors='replace').strip())], '?'
    out_raw = r.stdout
    outcome, _, reason = r.stderr.decode(errors='replace').strip().partition('\t')
    what = outcome + ' ' + reason
    inp, out = parse(inp_raw), parse(out_raw)
    want, paths = expected(rel, inp, inp_raw)
    errs = []
    if spec is not None and spec['expected'] != want:
        errs.append('manifest expects %s, the rules derive %s' % (spec['expected'], want))
    if spec is not None and bool(spec.get('known_bug')) != (rel in KNOWN_ISSUES):
        errs.append('known bug listed in only one of MANIFEST.tsv and KNOWN_ISSUES')
    if outcome != want:
        errs.append('outcome %s (%s), expected %s%s' % (
            outcome, reason, want, ' (a pinned bug: fixed? drop the KNOWN_ISSUES entry)'
            if 'outcome' in KNOWN_ISSUES.get(rel, {}) else ''))
    if outcome == 'untouched' or want == 'untouched':
        if out_raw != inp_raw:
            errs.append('untouched output is not the input')
        if png is not None:
            errs += check_no_image(inp_raw, out_raw, out)
        return errs, what
    errs += check_lines(inp_raw, out_raw)
    # --image: where the image part goes when an HTML part takes the signature.
    html_paths = [p for p in paths if part_at(inp, p).get_content_type() == 'text/html'] \
        if png is not None and outcome == 'signed' and outcome == want else []
    plan = image_plan(inp, html_paths[0]) if html_paths else None
    want_tree = tree_with_image(tree(inp), plan) if plan else tree(inp)
    if want_tree != tree(out):
        errs.append('structure differs: %s != %s' % (tree(out), want_tree))
        return errs, what
    if png is not None:
        if plan:
            errs += check_image(out, plan, [map_path(p, plan) for p in html_paths], png)
            if not reason.endswith(' with 1 image'):
                errs.append('reason %r does not end in " with 1 image"' % reason)
        else:
            errs += check_no_image(inp_raw, out_raw, out)
            if 'image' in reason:
                errs.append('reason %r names an image' % reason)
    issue = KNOWN_ISSUES.get(rel, {})
    moved = plan is not None and plan == ('wrap', ())
    # A header block over the limit has no end in sight when the stamp is
    # due: the processed header goes on top, right after Received.
    errs += check_headers(inp, out, outcome == 'signed' and () in paths,
                          header_block_size(inp_raw) > MAX_HEADER_BYTES, moved)
    if moved:
        errs += check_moved_fields(inp, part_at(out, (0,)))

    if outcome == 'stamped':
        # Only the two fields were added; everything else byte-exact.
        stripped = re.sub(rb'Received: from corpus\.test[^\r]*\r\n\tThu[^\r]*\r\n', b'',
                          out_raw, count=1)
        stripped = stripped.replace(PROCESSED.encode() + b': true\r\n', b'', 1)
        if stripped != inp_raw and stripped != inp_raw + b'\r\n':
            errs.append('stamped output is not the input plus two fields')
        if out_raw.count(TOKEN.encode()) != inp_raw.count(TOKEN.encode()):
            errs.append('token added to a stamped message')
        return errs, what

    anchors = (spec or {}).get('below_reply') or {}
    anchors = dict(anchors, **issue.get('placement', {}))
    signed_paths = set(paths) if outcome == want else set()
    html_block = HTML_BLOCK_IMAGE if png is not None else HTML_BLOCK
    for pth, ip in leaves(inp):
        op = part_at(out, map_path(pth, plan))
        if pth in signed_paths:
            ctype = op.get_content_type()
            text, orig = decoded_text(op), decoded_text(ip)
            if text.count(TOKEN) != 1:
                errs.append('token %d times in signed part %s' % (text.count(TOKEN), pth))
            if ctype == 'text/html' and len(MARKER_RE.findall(text)) != 1:
                errs.append('marker missing in html part %s' % (pth,))
            found = insertions(text, orig, ctype, html_block)
            if not found:
                errs.append('signed part %s is not the original plus the signature' % (pth,))
            elif not placed(found, orig, ctype, mode, anchors.get(ctype), spec is not None):
                want_at = anchors.get(ctype) if mode == 'below_reply' else None
                errs.append('signature in %s part %s not %s' % (
                    ctype, pth, 'directly above %r' % want_at if want_at else 'at the bottom'))
        else:
            if ip.get_content_type().startswith('message/'):
                same = ip.as_bytes() == op.as_bytes()
            else:
                same = ip.get_payload(decode=True) == op.get_payload(decode=True)
            if not same:
                errs.append('unsigned part %s changed' % (pth,))
            if TOKEN.encode() in (op.as_bytes() if op.is_multipart() else
                                  (op.get_payload(decode=True) or b'')):
                errs.append('token in unsigned part %s' % (pth,))
    return errs, what


def load_manifest(corpus):
    """{file: {'expected': ..., 'below_reply': {...} or None}}, or None when
    the folder has no MANIFEST.tsv with an "expected" column."""
    path = os.path.join(corpus, 'MANIFEST.tsv')
    if not os.path.isfile(path):
        return None
    with open(path, encoding='utf-8', newline='') as f:
        rows = list(csv.reader(f, delimiter='\t', quoting=csv.QUOTE_NONE))
    if not rows or 'expected' not in rows[0] or 'file' not in rows[0]:
        return None
    head = rows[0]
    out = {}
    for n, row in enumerate(rows[1:], 2):
        if not row:
            continue
        if len(row) != len(head):
            raise ValueError('MANIFEST.tsv line %d: %d columns, not %d' % (n, len(row), len(head)))
        rec = dict(zip(head, row))
        if rec['expected'] not in OUTCOMES:
            raise ValueError('MANIFEST.tsv line %d: expected %r' % (n, rec['expected']))
        br = rec.get('below_reply', '-')
        rec['below_reply'] = None if br in ('', '-') else json.loads(br)
        rec['known_bug'] = None if rec.get('known_bug', '-') in ('', '-') else rec['known_bug']
        if rec['file'] in out:
            raise ValueError('MANIFEST.tsv line %d: %s listed twice' % (n, rec['file']))
        out[rec['file']] = rec
    return out


def main():
    ap = argparse.ArgumentParser(usage=__doc__.split('\n\n')[1].strip()[7:])
    ap.add_argument('driver')
    ap.add_argument('dir')
    ap.add_argument('--optional', action='store_true')
    ap.add_argument('--generate', action='store_true')
    ap.add_argument('--certs')
    ap.add_argument('--image', metavar='PNG')
    args = ap.parse_args()
    if args.optional and args.generate:
        ap.error('--optional is for the shared corpus, --generate for the fixtures')
    if args.certs and not args.generate:
        ap.error('--certs goes with --generate')
    png = None
    if args.image:
        try:
            with open(args.image, 'rb') as f:
                png = f.read()
        except OSError as exc:
            print('cannot read the image: %s' % exc)
            return 1
    corpus = args.dir
    if args.optional:
        corpus = os.environ.get('SIGRELAY_CORPUS') or corpus
        if not os.path.isdir(corpus):
            print(SKIP_LINE)
            return 77
    if args.generate:
        cmd = [sys.executable, GENERATOR, corpus] + (['--certs', args.certs] if args.certs else [])
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            print('fixture generator failed (exit %d): %s'
                  % (r.returncode, (r.stderr + r.stdout).strip()))
            return 1
        print(r.stdout.strip())
    if not os.path.isdir(corpus):
        print('corpus folder %s not found' % corpus)
        return 1
    try:
        manifest = load_manifest(corpus)
    except (ValueError, KeyError) as exc:
        print('bad manifest: %s' % exc)
        return 1
    if args.generate and manifest is None:
        print('no MANIFEST.tsv with an expected column in %s' % corpus)
        return 1
    files = []
    for root, _, names in os.walk(corpus):
        files += [os.path.join(root, n) for n in names if n.endswith('.eml')]
    files.sort()
    if not files:
        print('no .eml files in %s' % corpus)
        return 1
    passed = failed = 0
    rels = set()
    for path in files:
        rel = os.path.relpath(path, corpus).replace(os.sep, '/')
        rels.add(rel)
        spec = manifest.get(rel) if manifest is not None else None
        errs, what = [], ''
        if manifest is not None and spec is None:
            errs.append('not in MANIFEST.tsv')
        for mode in ('bottom', 'below_reply'):
            try:
                e, what_mode = check_one(args.driver, path, rel, mode, spec, png, args.image)
            except Exception as exc:  # a crash in the checker is a failure too
                e, what_mode = ['checker error: %r' % exc], '?'
            errs += ['[%s] %s' % (mode, x) for x in e]
            what = what or what_mode
        note = ' [known bug, pinned: %s]' % KNOWN_ISSUES[rel]['bug'] if rel in KNOWN_ISSUES else ''
        if errs:
            failed += 1
            print('FAIL %s (%s): %s' % (rel, what, '; '.join(errs)))
        else:
            passed += 1
            print('ok   %s (%s)%s' % (rel, what, note))
    for rel in sorted(set(manifest or ()) - rels):
        failed += 1
        print('FAIL %s: listed in MANIFEST.tsv, no such file' % rel)
    print('%d passed, %d failed' % (passed, failed))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
