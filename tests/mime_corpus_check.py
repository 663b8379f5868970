#!/usr/bin/env python3
"""Runs every message of the MIME corpus through mime_corpus_driver and checks
the injector's output with Python's own email parser (standard library only).

usage: mime_corpus_check.py DRIVER CORPUS_DIR   (SIGRELAY_CORPUS overrides CORPUS_DIR)

Per file, for both placements (bottom, below_reply):
- the outcome (signed / stamped) is the one the DESIGN §7 rules give, derived
  here independently from Python's parse of the input (EXPECT below lists the
  few cases the rules cannot be derived for);
- no bare CR or LF, no line over 998 octets that was not already in the input;
- the output parses to the same tree of content types;
- top-level header fields: Received first, then the input's fields in order
  (values unchanged, except Content-Type/-Transfer-Encoding of a signed
  top-level part; MIME-Version/CTE/Content-Type may be added), the processed
  header last and once;
- signed: SIGTOKEN appears exactly once in each signed part (decoded with its
  charset) and nowhere else; every other leaf decodes to the same bytes;
- stamped: the output is the input plus exactly the two header fields.
"""
import email
import email.policy
import os
import re
import subprocess
import sys

TOKEN = 'SIGTOKEN-7f3a'
PROCESSED = 'X-Sigrelay-Test'
RECEIVED_START = b'Received: from corpus.test by sigrelay.test'

# Files whose expected outcome the rules below cannot derive from Python's
# parse, with the reason.
EXPECT = {
    # Python accepts a header block with neither empty line nor body; the
    # injector will not invent a body: stamped.
    'malformed/mimekit-missing-body-separator.eml': 'stamped',
}

STAMP_TYPES = {
    'multipart/signed', 'multipart/encrypted', 'application/pkcs7-mime',
    'application/x-pkcs7-mime', 'multipart/report', 'text/calendar',
    'application/ms-tnef', 'application/vnd.ms-tnef',
}
KNOWN_CTE = {None, '7bit', '8bit', 'binary', 'quoted-printable', 'base64'}
BCHARS = re.compile(r"^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$")


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


def walk_body(msg):
    """Parts of the body structure, not descending into message/* parts."""
    yield msg
    if msg.is_multipart() and not msg.get_content_type().startswith('message/'):
        for p in msg.get_payload():
            yield from walk_body(p)


def cte(p):
    v = p.get('content-transfer-encoding')
    return v.strip().lower() if v else None


def select(p, path=()):
    """DESIGN §7: text alternatives; the first part of other multiparts."""
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
        return select(kids[0], path + (0,))
    if ct in ('text/plain', 'text/html'):
        return [path]
    return []


def expected(rel, msg):
    """('signed', [paths]) or ('stamped', reason)."""
    if rel in EXPECT:
        return EXPECT[rel], []
    auto = (msg.get('auto-submitted') or 'no').strip().lower().split(';')[0].strip()
    if auto != 'no' or (msg.get('precedence') or '').strip().lower() == 'auto_reply' \
            or msg.get('x-autoreply') or msg.get('x-autorespond'):
        return 'stamped', []
    for p in walk_body(msg):
        if p.get_content_type() in STAMP_TYPES:
            return 'stamped', []
        if p.defects:
            return 'stamped', []
        if p.get_content_maintype() == 'multipart':
            b = p.get_param('boundary')
            b = email.utils.collapse_rfc2231_value(b) if b else None
            if not b or not BCHARS.match(b):
                return 'stamped', []
    paths = select(msg)
    if not paths:
        return 'stamped', []
    for path in paths:
        if cte(part_at(msg, path)) not in KNOWN_CTE:
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


SIG_LINES = ['Jos\u00e9 Example \u2014 Contoso', TOKEN]
HTML_BLOCK = re.compile(r'<div class="sigrelay-m-4c1d" data-sigrelay="m-4c1d">.*?' + TOKEN +
                        r'</p></div>', re.S)


def removes_to(text, orig, ctype):
    """True when `text` is `orig` with exactly one signature block inserted."""
    if ctype == 'text/html':
        return HTML_BLOCK.sub('', text, count=1) == orig
    for nl in ('\r\n', '\n'):
        sig = nl.join(SIG_LINES)
        for block in ('-- ' + nl + sig + nl, nl + '-- ' + nl + sig, sig + nl + nl):
            at = text.find(block)
            if at >= 0 and text[:at] + text[at + len(block):] == orig:
                return True
    return False


def header_names(msg):
    return [(k.lower(), v) for k, v in msg.items()]


def check_headers(inp, out, top_signed):
    errs = []
    names = header_names(out)
    if not names or names[0][0] != 'received' or 'corpus.test' not in names[0][1]:
        errs.append('Received is not the first field')
    if [n for n, _ in names].count(PROCESSED.lower()) != 1 or names[-1][0] != PROCESSED.lower():
        errs.append('processed header missing, repeated or not last')
    rest = names[1:-1]
    in_names = header_names(inp)
    in_set = {n for n, _ in in_names}
    addable = {'mime-version', 'content-transfer-encoding', 'content-type'}
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


def check_one(driver, path, rel, mode):
    inp_raw = crlf(open(path, 'rb').read())
    r = subprocess.run([driver, path, mode], capture_output=True, timeout=60)
    if r.returncode != 0:
        return ['driver exit %d: %s' % (r.returncode, r.stderr.decode(errors='replace').strip())], '?'
    out_raw = r.stdout
    outcome, _, reason = r.stderr.decode(errors='replace').strip().partition('\t')
    inp, out = parse(inp_raw), parse(out_raw)
    want, paths = expected(rel, inp)
    errs = []
    if outcome != want:
        errs.append('outcome %s (%s), expected %s' % (outcome, reason, want))
    errs += check_lines(inp_raw, out_raw)
    if tree(inp) != tree(out):
        errs.append('structure differs: %s != %s' % (tree(out), tree(inp)))
        return errs, outcome + ' ' + reason
    errs += check_headers(inp, out, outcome == 'signed' and () in paths)

    if outcome == 'stamped':
        # Only the two fields were added; everything else byte-exact.
        stripped = re.sub(rb'Received: from corpus\.test[^\r]*\r\n\tThu[^\r]*\r\n', b'',
                          out_raw, count=1)
        stripped = stripped.replace(PROCESSED.encode() + b': true\r\n', b'', 1)
        if stripped != inp_raw and stripped != inp_raw + b'\r\n':
            errs.append('stamped output is not the input plus two fields')
        if TOKEN.encode() in out_raw:
            errs.append('token in a stamped message')
        return errs, outcome + ' ' + reason

    signed_paths = set(paths) if outcome == want else set()
    for (pth, ip), (_, op) in zip(leaves(inp), leaves(out)):
        if pth in signed_paths:
            text = decoded_text(op)
            if text.count(TOKEN) != 1:
                errs.append('token %d times in signed part %s' % (text.count(TOKEN), pth))
            if op.get_content_type() == 'text/html' and text.count('sigrelay-m-4c1d') != 1:
                errs.append('marker missing in html part %s' % (pth,))
            if not removes_to(text, decoded_text(ip), op.get_content_type()):
                errs.append('signed part %s is not the original plus the signature' % (pth,))
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
    return errs, outcome + ' ' + reason


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    driver = sys.argv[1]
    corpus = os.environ.get('SIGRELAY_CORPUS') or sys.argv[2]
    if not os.path.isdir(corpus):
        print('corpus folder %s not found (set SIGRELAY_CORPUS)' % corpus)
        return 1
    files = []
    for root, _, names in os.walk(corpus):
        files += [os.path.join(root, n) for n in names if n.endswith('.eml')]
    files.sort()
    if not files:
        print('no .eml files in %s' % corpus)
        return 1
    passed = failed = 0
    for path in files:
        rel = os.path.relpath(path, corpus)
        errs, what = [], ''
        for mode in ('bottom', 'below_reply'):
            try:
                e, what_mode = check_one(driver, path, rel, mode)
            except Exception as exc:  # a crash in the checker is a failure too
                e, what_mode = ['checker error: %r' % exc], '?'
            errs += ['[%s] %s' % (mode, x) for x in e]
            what = what or what_mode
        if errs:
            failed += 1
            print('FAIL %s (%s): %s' % (rel, what, '; '.join(errs)))
        else:
            passed += 1
            print('ok   %s (%s)' % (rel, what))
    print('%d passed, %d failed' % (passed, failed))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
