"""sigrelay-directory end to end: the tool runs as a process; `sync` talks
HTTPS to graph_standin.py (token endpoint and Graph on 127.0.0.1). Standard
library only; loopback only.

usage: directory_tool_test.py SIGRELAY-DIRECTORY CERTS_DIR [case ...]
With SIGRELAY_INJECT and SIGRELAY_EXAMPLES set (meson does), one more case
loads the tool's output with sigrelay-inject."""
import email
import email.policy
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir, "integration"))
sys.path.insert(0, HERE)
import harness  # noqa: E402
from harness import case  # noqa: E402
from graph_standin import GraphStandIn  # noqa: E402

TOOL = None
CERTS = None
SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def tool_env(extra=None):
    """The environment without proxies and CA settings of this machine."""
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy",
                                "requests_ca_bundle", "curl_ca_bundle")}
    env["NO_PROXY"] = "*"
    env.update(extra or {})
    return env


def run(*args, env=None, timeout=60, limit_file_size=None):
    cmd = [TOOL] if os.access(TOOL, os.X_OK) else ["/usr/bin/python3", TOOL]

    def limits():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_size, limit_file_size))

    return subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, env=tool_env(env),
                          preexec_fn=limits if limit_file_size is not None else None)


def lines_of(path):
    """The directory, line by line, each line parsed on its own."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    assert text.endswith("\n"), "no newline at the end"
    return [json.loads(line) for line in text.split("\n")[:-1]]


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def assert_one_error_line(p, *needles):
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    err = p.stderr.strip().splitlines()
    assert "Traceback" not in p.stderr, p.stderr
    assert err and err[-1].startswith("sigrelay-directory: "), p.stderr
    for needle in needles:
        assert needle in err[-1], (needle, p.stderr)
    return err[-1]


def write(path, text, encoding="utf-8"):
    with open(path, "w", encoding=encoding, newline="") as f:
        f.write(text)


# ---- the Entra admin center's "Download users" export ------------------------
ENTRA_HEADER = ("userPrincipalName,displayName,surname,mail,givenName,objectId,userType,jobTitle,"
                "department,accountEnabled,usageLocation,streetAddress,state,country,"
                "physicalDeliveryOfficeName,city,postalCode,telephoneNumber,mobile,"
                "authenticationAlternativePhoneNumber,authenticationEmail,alternateEmailAddress,"
                "ageGroup,consentProvidedForMinor,legalAgeGroupClassification,companyName,"
                "proxyAddresses,employeeId")


def entra_row(upn, display, surname, mail, given, oid, user_type="Member", title="", dept="",
              enabled="True", usage="", street="", state="", country="", office="", city="",
              postal="", phone="", mobile="", alt="", company="", proxies="", employee=""):
    cells = [upn, display, surname, mail, given, oid, user_type, title, dept, enabled, usage,
             street, state, country, office, city, postal, phone, mobile, "", "", alt, "", "", "",
             company, proxies, employee]

    def quote(c):
        return '"' + c.replace('"', '""') + '"' if any(x in c for x in ',"\n') else c
    return ",".join(quote(c) for c in cells)


ENTRA_CSV = "\ufeff" + "\r\n".join([
    ENTRA_HEADER,
    entra_row("zoe.akesson@fabrikam.com", "Zoë Åkesson", "Åkesson", "zoe.akesson@fabrikam.com", "Zoë",
              "7c1e-0003", title="Nordic Sales Lead", dept="Sales", usage="SE",
              street="Kungsgatan 1\nc/o Fabrikam", country="Sweden", city="Stockholm",
              postal="111 43", phone="+46 8 555 010 00"),
    entra_row("jane.doe@fabrikam.com", "Jane Doe", "Doe", "jane.doe@fabrikam.com", "Jane", "7c1e-0001",
              title="Chief Executive Officer, Founder", dept='Management, "Board"', usage="US",
              street="One Microsoft Way", state="WA", country="United States",
              office="Building 1, Floor 2", city="Redmond", postal="98052", phone="+1 425 555 0100",
              mobile="+1 425 555 0101", alt="jane@example.org", company="Fabrikam, Inc.",
              proxies="SMTP:jane.doe@fabrikam.com,smtp:jd@fabrikam.com", employee="E-1001"),
    entra_row("taro.yamada@fabrikam.com", "山田 太郎", "山田", "Taro.Yamada@fabrikam.com", "太郎", "7c1e-0002",
              title="営業部長", dept="日本語 営業部", country="日本", city="東京"),
    entra_row("old.account@fabrikam.com", "Old Account", "", "old.account@fabrikam.com", "", "7c1e-0004",
              enabled="False", title="Retired"),
    entra_row("partner_example.com#EXT#@fabrikam.onmicrosoft.com", "Pat Partner", "", "pat@example.com",
              "", "7c1e-0005", user_type="Guest"),
    entra_row("old_b2b_example.net#EXT#@fabrikam.onmicrosoft.com", "Old B2B", "", "b2b@example.net", "",
              "7c1e-0006"),
    entra_row("room.1@fabrikam.onmicrosoft.com", "Room 1", "", "", "", "7c1e-0007"),
    entra_row("svc-backup@fabrikam.onmicrosoft.com", "Backup service", "", "", "", "7c1e-0008",
              title="Service"),
]) + "\r\n"

JANE = {"email": "jane.doe@fabrikam.com", "display_name": "Jane Doe",
        "title": "Chief Executive Officer, Founder", "department": 'Management, "Board"',
        "phone": "+1 425 555 0100", "mobile": "+1 425 555 0101", "office": "Building 1, Floor 2",
        "company": "Fabrikam, Inc.", "street": "One Microsoft Way", "city": "Redmond",
        "postal_code": "98052", "state": "WA", "country": "United States",
        "alternate_email_address": "jane@example.org", "employee_id": "E-1001", "given_name": "Jane",
        "id": "7c1e-0001", "surname": "Doe", "usage_location": "US",
        "user_principal_name": "jane.doe@fabrikam.com", "user_type": "Member"}
TARO = {"email": "Taro.Yamada@fabrikam.com", "display_name": "山田 太郎", "title": "営業部長",
        "department": "日本語 営業部", "city": "東京", "country": "日本", "given_name": "太郎",
        "id": "7c1e-0002", "surname": "山田", "user_principal_name": "taro.yamada@fabrikam.com",
        "user_type": "Member"}
ZOE = {"email": "zoe.akesson@fabrikam.com", "display_name": "Zoë Åkesson", "title": "Nordic Sales Lead",
       "department": "Sales", "phone": "+46 8 555 010 00", "street": "Kungsgatan 1\nc/o Fabrikam",
       "city": "Stockholm", "postal_code": "111 43", "country": "Sweden", "given_name": "Zoë",
       "id": "7c1e-0003", "surname": "Åkesson", "usage_location": "SE",
       "user_principal_name": "zoe.akesson@fabrikam.com", "user_type": "Member"}


def import_entra_csv(d):
    src, out = os.path.join(d, "exportUsers_2026-1-7.csv"), os.path.join(d, "fabrikam-users.ndjson")
    write(src, ENTRA_CSV)
    return run("import", "--csv", src, "--out", out), out


@case
def csv_export_maps_every_attribute_sorted_and_skips_with_counts():
    with tempfile.TemporaryDirectory() as d:
        p, out = import_entra_csv(d)
        assert p.returncode == 0, p.stderr
        assert p.stdout == (f"sigrelay-directory: wrote 3 users to {out}; "
                            "skipped 1 disabled, 2 without mail, 2 guests\n"), p.stdout
        assert p.stderr == "", p.stderr
        records = lines_of(out)
        assert records == [JANE, TARO, ZOE], records
        assert list(records[0]) == list(JANE), list(records[0])  # email first, documented order
        raw = read_bytes(out).decode("utf-8")
        assert "Zoë Åkesson" in raw and "山田 太郎" in raw and "\\u" not in raw  # UTF-8, not escaped
        assert oct(os.stat(out).st_mode & 0o777) == oct(0o644 & ~current_umask())
        assert sorted(os.listdir(d)) == ["exportUsers_2026-1-7.csv", "fabrikam-users.ndjson"]


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@case
def csv_with_readable_headers_semicolons_and_no_bom():
    header = ["User principal name", "Display name", "First name", "Last name", "Mail", "Object ID",
              "User type", "Job title", "Department", "Account enabled", "Office", "Office phone",
              "Mobile phone", "Company name", "Street address", "City", "State or province",
              "ZIP or postal code", "Country or region", "Employee ID", "Fax number", "Proxy addresses",
              "Cost center", "Block credential"]
    rows = [
        ["lee.gu@contoso.com", "Lee Gu", "Lee", "Gu", "lee.gu@contoso.com", "c0-1", "Member",
         "Director of Engineering", "R&D; Platform", "TRUE", "18/2111", "+1 206 555 0130",
         "+1 206 555 0131", "Contoso Ltd", "1 Main St", "Seattle", "WA", "98101", "United States",
         "4711", "+1 206 555 0139", '["SMTP:lee.gu@contoso.com"]', "CC-42", "False"],
        ["blocked@contoso.com", "Blocked", "", "", "blocked@contoso.com", "c0-2", "Member", "", "",
         "", "", "", "", "", "", "", "", "", "", "", "", "", "", "True"],
    ]

    def q(c):
        return '"' + c.replace('"', '""') + '"' if any(x in c for x in ';"') else c
    text = "\n".join(";".join(q(c) for c in r) for r in [header] + rows) + "\n"
    with tempfile.TemporaryDirectory() as d:
        src, out = os.path.join(d, "users.csv"), os.path.join(d, "contoso-users.ndjson")
        write(src, text)
        p = run("import", "--csv", src, "--out", out, "--quiet")
        assert p.returncode == 0, p.stderr
        assert p.stdout == "", p.stdout
        assert lines_of(out) == [{
            "email": "lee.gu@contoso.com", "display_name": "Lee Gu", "title": "Director of Engineering",
            "department": "R&D; Platform", "phone": "+1 206 555 0130", "mobile": "+1 206 555 0131",
            "office": "18/2111", "company": "Contoso Ltd", "street": "1 Main St", "city": "Seattle",
            "postal_code": "98101", "state": "WA", "country": "United States", "cost_center": "CC-42",
            "employee_id": "4711", "fax_number": "+1 206 555 0139", "given_name": "Lee", "id": "c0-1",
            "surname": "Gu", "user_principal_name": "lee.gu@contoso.com", "user_type": "Member"}]


@case
def duplicate_and_invalid_addresses_are_skipped_with_warnings():
    text = "\n".join([
        "mail,displayName",
        "a@fabrikam.com,First",
        "A@FABRIKAM.COM,Second",
        "b c@fabrikam.com,Blank",
        "no-at.fabrikam.com,NoAt",
        "two@at@fabrikam.com,TwoAt",
        "@fabrikam.com,NoLocal",
        "tab\t@fabrikam.com,Tab",
        " padded@fabrikam.com ,Padded",
        "ß@fabrikam.com,Sharp",
        "SS@fabrikam.com,NotADuplicate",
    ]) + "\n"
    with tempfile.TemporaryDirectory() as d:
        src, out = os.path.join(d, "u.csv"), os.path.join(d, "u.ndjson")
        write(src, text)
        p = run("import", "--csv", src, "--out", out)
        assert p.returncode == 0, p.stderr
        assert p.stdout.endswith("; skipped 0 disabled, 0 without mail, 0 guests, "
                                 "1 duplicate address, 5 invalid addresses\n"), p.stdout
        assert "wrote 4 users" in p.stdout, p.stdout
        warnings = p.stderr.splitlines()
        assert len(warnings) == 6, p.stderr
        assert warnings[0] == (f"sigrelay-directory: warning: {src}:3: duplicate address "
                               f"A@FABRIKAM.COM (kept {src}:2); skipped"), warnings[0]
        assert f'{src}:4: address "b c@fabrikam.com" contains a blank or control character' \
            in warnings[1], warnings[1]
        assert [r["display_name"] for r in lines_of(out)] == ["First", "Padded", "NotADuplicate", "Sharp"]
        assert lines_of(out)[1]["email"] == "padded@fabrikam.com"


@case
def csv_errors_are_one_line_and_keep_the_old_directory():
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "users.ndjson")
        old = '{"email": "keep@fabrikam.com", "display_name": "Keep"}\n'
        write(out, old)
        cases = [
            ("nomail.csv", "userPrincipalName,displayName\nx@f.com,X\n", ":1: no mail column"),
            ("quotes.csv", 'mail,displayName\na@f.com,"Bad"quote\n', ":2: bad CSV: "),
            ("latin1.csv", None, ":2: not UTF-8 text"),
            ("empty.csv", "", "empty file"),
        ]
        for name, text, needle in cases:
            src = os.path.join(d, name)
            if text is None:
                with open(src, "wb") as f:
                    f.write("mail,displayName\nz@f.com,Zoë\n".encode("latin-1"))
            else:
                write(src, text)
            p = run("import", "--csv", src, "--out", out)
            assert_one_error_line(p, src + needle if needle.startswith(":") else needle)
            assert p.stdout == "", (name, p.stdout)
            assert read_bytes(out).decode() == old, name
        p = run("import", "--csv", os.path.join(d, "missing.csv"), "--out", out)
        assert_one_error_line(p, "cannot read", "missing.csv", "No such file or directory")
        p = run("import", "--graph-json", os.path.join(d, "quotes.csv"), "--out", out)
        assert_one_error_line(p, "quotes.csv: invalid JSON")
        p = run("import", "--csv", os.path.join(d, "quotes.csv"), "--out", os.path.join(d, "no", "dir.ndjson"))
        assert_one_error_line(p)
        assert read_bytes(out).decode() == old
        assert sorted(f for f in os.listdir(d) if f.startswith(".")) == [], os.listdir(d)


@case
def graph_json_pages_with_delta_entries():
    page1 = {
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users",
        "@odata.nextLink": "https://graph.microsoft.com/v1.0/users/delta?$skiptoken=abc",
        "value": [
            {"@odata.type": "#microsoft.graph.user", "id": "u1", "mail": "adele.vance@contoso.com",
             "displayName": "Adele Vance", "givenName": "Adele", "surname": "Vance",
             "jobTitle": "Retail Manager", "businessPhones": ["+1 425 555 0109", "+1 425 555 0110"],
             "mobilePhone": "+1 425 555 0111", "officeLocation": "18/2111", "accountEnabled": True,
             "employeeId": "1001", "onPremisesSamAccountName": "adelev", "preferredLanguage": "en-US",
             "proxyAddresses": ["SMTP:adele.vance@contoso.com"], "otherMails": ["a@example.org"],
             "onPremisesExtensionAttributes": {"extensionAttribute1": "x"}, "ageGroup": None,
             "employeeHireDate": "2020-01-01T00:00:00Z", "extension_9d2f_costCenter": "CC-1",
             "signInCount": 17, "showInAddressList": True, "faxNumber": "", "manager@delta": [{"id": "m"}]},
            {"id": "u2", "mail": "alex.wilber@contoso.com", "displayName": "Alex Wilber",
             "businessPhones": [], "userType": "Member"},
            {"id": "u3", "mail": None, "displayName": "Conference Room"},
        ]}
    page2 = {
        "@odata.deltaLink": "https://graph.microsoft.com/v1.0/users/delta?$deltatoken=xyz",
        "value": [
            {"id": "u2", "@removed": {"reason": "changed"}},
            {"id": "u1", "jobTitle": "Chief Financial Officer", "mobilePhone": None},
            {"id": "u4", "mail": "megan.bowen@contoso.com", "displayName": "Megan Bowen",
             "userPrincipalName": "megan.bowen@contoso.com", "accountEnabled": True, "userType": "Member"},
            {"id": "u5", "mail": "guest@example.com", "userType": "Guest"},
        ]}
    with tempfile.TemporaryDirectory() as d:
        files = []
        for i, page in enumerate((page1, page2), 1):
            files.append(os.path.join(d, f"page{i}.json"))
            with open(files[-1], "w", encoding="utf-8") as f:
                json.dump(page, f)
        out = os.path.join(d, "contoso-users.ndjson")
        p = run("import", "--graph-json", *files, "--out", out)
        assert p.returncode == 0, p.stderr
        assert p.stdout == (f"sigrelay-directory: wrote 2 users to {out}; "
                            "skipped 0 disabled, 1 without mail, 1 guest\n"), p.stdout
        assert lines_of(out) == [
            {"email": "adele.vance@contoso.com", "display_name": "Adele Vance",
             "title": "Chief Financial Officer", "phone": "+1 425 555 0109", "office": "18/2111",
             "employee_hire_date": "2020-01-01T00:00:00Z", "employee_id": "1001",
             "extension_9d2f_cost_center": "CC-1", "given_name": "Adele", "id": "u1",
             "on_premises_sam_account_name": "adelev", "preferred_language": "en-US", "surname": "Vance"},
            {"email": "megan.bowen@contoso.com", "display_name": "Megan Bowen", "id": "u4",
             "user_principal_name": "megan.bowen@contoso.com", "user_type": "Member"},
        ], lines_of(out)
        # Only the first page: a warning that the rest is missing.
        p = run("import", "--graph-json", files[0], "--out", out)
        assert p.returncode == 0, p.stderr
        assert "page1.json has an @odata.nextLink" in p.stderr, p.stderr
        assert [r["email"] for r in lines_of(out)] == ["adele.vance@contoso.com", "alex.wilber@contoso.com"]


# ---- sync against the stand-in ---------------------------------------------
def user(uid, mail, name, **props):
    u = {"id": uid, "mail": mail, "displayName": name, "userPrincipalName": mail or f"{uid}@contoso.com",
         "accountEnabled": True, "userType": "Member", "businessPhones": []}
    u.update(props)
    return u


ALICE = user("a-1", "alice@contoso.com", "Alice Adams", jobTitle="CEO", businessPhones=["+1 206 555 0100"])
BOB = user("b-2", "bob@contoso.com", "Bob Brown", jobTitle="Sales Rep", department="Sales",
           mobilePhone="+1 206 555 0121")
CAROL = user("c-3", "carol@contoso.com", "Carol Clark", accountEnabled=False)
DAVE = user("d-4", "dave@example.net", "Dave Guest", userPrincipalName="dave_example.net#EXT#@contoso.onmicrosoft.com",
            userType="Guest")
ERIN = user("e-5", None, "Erin NoMail")
FRANK = user("f-6", "frank@contoso.com", "Frank Fischer", companyName="Contoso Ltd", city="München",
             employeeId="0042")


def record(u, **changes):
    """What the tool should write for one of the users above."""
    merged = dict(u, **changes)
    r = {"email": merged["mail"], "display_name": merged["displayName"]}
    for prop, name in (("jobTitle", "title"), ("department", "department"), ("businessPhones", "phone"),
                       ("mobilePhone", "mobile"), ("companyName", "company"), ("city", "city")):
        v = merged.get(prop)
        if isinstance(v, list):
            v = v[0] if v else None
        if v:
            r[name] = v
    if merged.get("employeeId"):
        r["employee_id"] = merged["employeeId"]
    r.update({"id": merged["id"], "user_principal_name": merged["userPrincipalName"], "user_type": "Member"})
    return r


class Sync:
    """A stand-in and the arguments that point the tool at it."""

    def __init__(self, d, standin):
        self.d, self.s = d, standin
        self.out = os.path.join(d, "contoso-users.ndjson")
        self.secret_file = os.path.join(d, "client.secret")
        write(self.secret_file, standin.secret + "\n")

    def args(self, ca=True, secret_file=None):
        a = ["sync", "--tenant-id", self.s.tenant, "--client-id", self.s.client_id,
             "--client-secret-file", secret_file or self.secret_file, "--authority", self.s.authority,
             "--graph-url", self.s.base, "--out", self.out]
        return a + (["--ca-file", os.path.join(CERTS, "ca.pem")] if ca else [])

    def run(self, *extra, env=None, ca=True, secret_file=None):
        # A CA bundle in the environment must not override --ca-file.
        env = dict({"REQUESTS_CA_BUNDLE": SYSTEM_BUNDLE} if ca else {}, **(env or {}))
        return run(*self.args(ca, secret_file), *extra, env=env)

    def state(self):
        with open(self.out + ".delta", encoding="utf-8") as f:
            return json.load(f)


def standin_with_three_pages():
    s = GraphStandIn(CERTS)
    s.full_pages = [[ALICE, BOB], [CAROL, DAVE], [ERIN, FRANK]]
    return s


@case
def sync_full_then_delta_applies_changes():
    bob_changed = {"id": BOB["id"], "jobTitle": "Head of Sales", "mobilePhone": None, "department": "Sales EMEA"}
    grace = user("g-7", "grace@contoso.com", "Grace Green", officeLocation="Building 4")
    with tempfile.TemporaryDirectory() as d, standin_with_three_pages() as s:
        s.deltas = {"D1": ([[bob_changed, grace], [{"id": ALICE["id"], "@removed": {"reason": "changed"}}]], "D2"),
                    "D2": ([[]], "D3")}
        sy = Sync(d, s)
        p = sy.run()
        assert p.returncode == 0, p.stderr
        assert p.stdout == (f"sigrelay-directory: wrote 3 users to {sy.out}; skipped 1 disabled, "
                            "1 without mail, 1 guest; full sync, 3 pages\n"), p.stdout
        assert lines_of(sy.out) == [record(ALICE), record(BOB), record(FRANK)], lines_of(sy.out)
        # Discovery, one token, three pages: the first with $select, then the skiptokens.
        assert s.other_log == [f"/{s.tenant}/v2.0/.well-known/openid-configuration"], s.other_log
        assert len(s.token_log) == 1 and s.token_log[0]["grant_type"] == "client_credentials"
        assert s.token_log[0]["scope"] == f"{s.base}/.default", s.token_log
        queries = [e["query"] for e in s.graph_log]
        select = queries[0]["$select"].split(",")
        for prop in ("id", "mail", "userPrincipalName", "displayName", "jobTitle", "department",
                     "businessPhones", "mobilePhone", "officeLocation", "companyName", "streetAddress",
                     "city", "postalCode", "country", "state", "accountEnabled", "userType",
                     "givenName", "surname"):
            assert prop in select, prop
        assert queries[1:] == [{"$skiptoken": "full.1"}, {"$skiptoken": "full.2"}], queries
        state = sy.state()
        assert state["delta_link"] == f"{s.base}/v1.0/users/delta?$deltatoken=D1", state
        assert [u["id"] for u in state["users"]] == ["a-1", "b-2", "c-3", "d-4", "e-5", "f-6"]
        assert oct(os.stat(sy.out + ".delta").st_mode & 0o777) == oct(0o600 & ~current_umask())

        p = sy.run()
        assert p.returncode == 0, p.stderr
        assert p.stdout.endswith("1 guest; 3 changes since the last sync\n"), p.stdout
        assert lines_of(sy.out) == [
            record(BOB, jobTitle="Head of Sales", mobilePhone=None, department="Sales EMEA"),
            record(FRANK),
            dict(record(grace), office="Building 4"),
        ], lines_of(sy.out)
        assert [e["query"] for e in s.graph_log[3:]] == [{"$deltatoken": "D1"}, {"$skiptoken": "D1.1"}]
        assert sy.state()["delta_link"].endswith("$deltatoken=D2")
        assert "a-1" not in [u["id"] for u in sy.state()["users"]]

        before = read_bytes(sy.out)
        p = sy.run()
        assert p.returncode == 0 and p.stdout.endswith("; 0 changes since the last sync\n"), p
        assert read_bytes(sy.out) == before
        assert sy.state()["delta_link"].endswith("$deltatoken=D3")


@case
def sync_gets_a_new_token_when_graph_answers_401():
    with tempfile.TemporaryDirectory() as d, standin_with_three_pages() as s:
        s.faults = {1: "expire"}  # the second page: the token is no longer good
        sy = Sync(d, s)
        # No --ca-file: the test CA through $REQUESTS_CA_BUNDLE, as requests honours it.
        p = sy.run(ca=False, env={"REQUESTS_CA_BUNDLE": os.path.join(CERTS, "ca.pem")})
        assert p.returncode == 0, p.stderr
        assert s.graph_statuses() == [200, 401, 200, 200], s.graph_statuses()
        assert len(s.token_log) == 2, s.token_log
        tokens = [e["token"] for e in s.graph_log]
        assert tokens[0] == tokens[1] != tokens[2] == tokens[3], tokens
        assert lines_of(sy.out) == [record(ALICE), record(BOB), record(FRANK)]


@case
def sync_waits_for_retry_after_on_429_and_503():
    with tempfile.TemporaryDirectory() as d, standin_with_three_pages() as s:
        s.faults = {1: (429, {"Retry-After": "1"}, "TooManyRequests"),
                    3: (503, {"Retry-After": "1"}, "ServiceUnavailable")}
        sy = Sync(d, s)
        p = sy.run()
        assert p.returncode == 0, p.stderr
        assert s.graph_statuses() == [200, 429, 200, 503, 200], s.graph_statuses()
        times = [e["time"] for e in s.graph_log]
        assert times[2] - times[1] >= 0.95, times
        assert times[4] - times[3] >= 0.95, times
        assert s.graph_log[2]["query"] == s.graph_log[1]["query"] == {"$skiptoken": "full.1"}
        assert "429 TooManyRequests; retrying in 1 s" in p.stderr, p.stderr
        assert lines_of(sy.out) == [record(ALICE), record(BOB), record(FRANK)]


@case
def sync_wrong_secret_fails_and_leaves_the_old_directory():
    with tempfile.TemporaryDirectory() as d, standin_with_three_pages() as s:
        sy = Sync(d, s)
        old = '{"email": "keep@contoso.com"}\n'
        write(sy.out, old)
        bad = os.path.join(d, "wrong.secret")
        write(bad, "not-the-S3cret\n")
        p = sy.run(secret_file=bad)
        line = assert_one_error_line(p, "token request refused: invalid_client: AADSTS7000215")
        assert "Trace ID" not in line
        assert "not-the-S3cret" not in p.stderr + p.stdout
        assert s.token_log and s.token_log[0]["client_secret"] == "not-the-S3cret"  # newline stripped
        assert s.graph_log == []
        assert read_bytes(sy.out).decode() == old
        assert not os.path.exists(sy.out + ".delta")
        # Other expected failures: one line each, the old file kept.
        p = sy.run(secret_file=os.path.join(d, "none.secret"))
        assert_one_error_line(p, "cannot read the client secret from", "No such file or directory")
        p = sy.run(ca=False)  # the test CA is not trusted by the system
        assert_one_error_line(p, "TLS certificate not trusted", "--ca-file")
        s.faults = {0: (403, {}, "Authorization_RequestDenied")}
        p = sy.run()
        assert_one_error_line(p, "HTTP 403 Authorization_RequestDenied", "User.Read.All")
        assert read_bytes(sy.out).decode() == old
        assert sorted(os.listdir(d)) == ["client.secret", "contoso-users.ndjson", "wrong.secret"]


@case
def sync_failing_midway_keeps_directory_and_delta_state():
    with tempfile.TemporaryDirectory() as d, standin_with_three_pages() as s:
        s.deltas = {"D1": ([[{"id": BOB["id"], "jobTitle": "Never written"}], []], "D2")}
        sy = Sync(d, s)
        assert sy.run().returncode == 0
        directory, state = read_bytes(sy.out), read_bytes(sy.out + ".delta")
        s.faults = {4: (500, {}, "generalException")}  # the delta's second page
        p = sy.run()
        assert_one_error_line(p, "HTTP 500 generalException")
        assert read_bytes(sy.out) == directory and read_bytes(sy.out + ".delta") == state
        p = sy.run()  # the same delta link again, now answered
        assert p.returncode == 0, p.stderr
        assert [e["query"] for e in s.graph_log[3:]] == [{"$deltatoken": "D1"}, {"$skiptoken": "D1.1"},
                                                        {"$deltatoken": "D1"}, {"$skiptoken": "D1.1"}]
        assert record(BOB, jobTitle="Never written") in lines_of(sy.out)


@case
def sync_refused_delta_link_means_a_full_sync():
    with tempfile.TemporaryDirectory() as d, standin_with_three_pages() as s:
        sy = Sync(d, s)
        assert sy.run().returncode == 0
        s.full_pages = [[ALICE], [FRANK]]  # meanwhile Bob left; the stand-in forgot D1
        s.initial_delta = "D9"
        p = sy.run()
        assert p.returncode == 0, p.stderr
        assert "the saved delta link was refused (HTTP 410 syncStateNotFound); doing a full sync" \
            in p.stderr, p.stderr
        assert p.stdout.endswith("; full sync, 2 pages\n"), p.stdout
        assert s.graph_statuses()[3:] == [410, 200, 200], s.graph_statuses()
        assert lines_of(sy.out) == [record(ALICE), record(FRANK)]
        assert sy.state()["delta_link"].endswith("$deltatoken=D9")
        # --full ignores the state; so does a run asking for other properties.
        s.full_pages = [[FRANK]]
        p = sy.run("--full")
        assert p.returncode == 0 and lines_of(sy.out) == [record(FRANK)], p.stderr
        assert p.stdout.endswith("; full sync, 1 page\n"), p.stdout
        assert "$select" in s.graph_log[-1]["query"]
        s.full_pages = [[FRANK, dict(BOB, preferredLanguage="de-DE")]]
        p = sy.run("--select", "preferredLanguage")
        assert p.returncode == 0, p.stderr
        assert "saved for another tenant, Graph URL or --select; doing a full sync" in p.stderr, p.stderr
        assert s.graph_log[-1]["query"]["$select"].endswith(",userType,preferredLanguage")
        assert lines_of(sy.out)[0] == dict(record(BOB), preferred_language="de-DE")
        assert sy.state()["select"][-1] == "preferredLanguage"


@case
def a_failed_write_keeps_the_old_directory():
    with tempfile.TemporaryDirectory() as d:
        src, out = os.path.join(d, "users.csv"), os.path.join(d, "users.ndjson")
        write(src, ENTRA_CSV)
        old = '{"email": "keep@fabrikam.com", "display_name": "Keep"}\n'
        write(out, old)
        os.chmod(out, 0o640)
        p = run("import", "--csv", src, "--out", out, limit_file_size=200)  # the new file is larger
        assert_one_error_line(p, f"cannot write {out}: File too large; the old file is unchanged")
        assert read_bytes(out).decode() == old
        assert sorted(os.listdir(d)) == ["users.csv", "users.ndjson"], os.listdir(d)
        # Replaced, the file keeps its mode; a symbolic link stays a link.
        link = os.path.join(d, "link.ndjson")
        os.symlink("users.ndjson", link)
        p = run("import", "--csv", src, "--out", link)
        assert p.returncode == 0, p.stderr
        assert os.path.islink(link) and len(lines_of(out)) == 3
        assert os.stat(out).st_mode & 0o777 == 0o640


WAIT_FOR_HUP = r"""
import signal, sys, time
def hup(signum, frame):
    with open(sys.argv[1], "w") as f:
        f.write("SIGHUP")
    sys.exit(0)
signal.signal(signal.SIGHUP, hup)
print("ready", flush=True)
time.sleep(30)
sys.exit(3)
"""


@case
def reload_pidfile_sends_sighup():
    with tempfile.TemporaryDirectory() as d:
        src, out = os.path.join(d, "users.csv"), os.path.join(d, "users.ndjson")
        write(src, ENTRA_CSV)
        marker, pidfile = os.path.join(d, "marker"), os.path.join(d, "sigrelay.pid")
        child = subprocess.Popen(["/usr/bin/python3", "-c", WAIT_FOR_HUP, marker], stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout.readline() == "ready\n"
            write(pidfile, f"{child.pid}\n")
            p = run("import", "--csv", src, "--out", out, "--reload-pidfile", pidfile)
            assert p.returncode == 0, p.stderr
            assert child.wait(timeout=10) == 0
            with open(marker) as f:
                assert f.read() == "SIGHUP"
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        # Errors: the directory is written, the reload is not done, exit 1.
        gone = subprocess.Popen(["/usr/bin/python3", "-c", "pass"])
        gone.wait()
        for content, needle in ((None, "cannot read pid file"), ("sigrelay\n", "expected a process id"),
                                (f"{gone.pid}\n", f"no process {gone.pid} (stale pid file?)")):
            os.unlink(out)
            if content is None:
                os.unlink(pidfile)
            else:
                write(pidfile, content)
            p = run("import", "--csv", src, "--out", out, "--reload-pidfile", pidfile)
            assert_one_error_line(p, needle, "sigrelay not reloaded")
            assert len(lines_of(out)) == 3
            assert p.stdout.startswith("sigrelay-directory: wrote 3 users"), p.stdout


@case
def help_and_usage():
    for args, needle in ((["--help"], "usage: sigrelay-directory"),
                         (["import", "--help"], "usage: sigrelay-directory import"),
                         (["sync", "--help"], "--client-secret-file FILE")):
        p = run(*args)
        assert p.returncode == 0 and needle in p.stdout, (args, p.stdout, p.stderr)
    assert run().returncode == 2
    assert run("import", "--out", "x.ndjson").returncode == 2  # no source
    assert run("import", "--csv", "a.csv", "--graph-json", "b.json", "--out", "x").returncode == 2
    p = run("sync", "--out", "x.ndjson")
    assert p.returncode == 2 and "--tenant-id" in p.stderr, p.stderr


def sigrelay_accepts_the_output():
    """The tool's output loads in sigrelay-inject (meson passes the binary)."""
    inject, examples = (os.path.abspath(os.environ[k]) for k in ("SIGRELAY_INJECT", "SIGRELAY_EXAMPLES"))
    with tempfile.TemporaryDirectory() as d:
        p, out = import_entra_csv(d)
        assert p.returncode == 0, p.stderr
        # A copy of the examples (their "../certs" beside them) with fabrikam's
        # directory replaced by the tool's output.
        copy = os.path.join(d, "examples")
        shutil.copytree(examples, copy, symlinks=True)
        os.symlink(os.path.realpath(os.path.join(examples, os.pardir, "certs")), os.path.join(d, "certs"))
        with open(os.path.join(copy, "tenants.json"), encoding="utf-8") as f:
            config = json.load(f)
        [fabrikam] = [t for t in config["tenants"] if t["id"] == "fabrikam"]
        shutil.copyfile(out, os.path.join(copy, fabrikam["directory_file"]))
        tenants = os.path.join(copy, "tenants.json")
        p = subprocess.run([inject, "--tenants", tenants, "--check"], capture_output=True, text=True, timeout=30)
        assert p.returncode == 0 and "fabrikam (3 users)" in p.stdout + p.stderr, (p.stdout, p.stderr)
        message = "From: Zoe <zoe.akesson@fabrikam.com>\nTo: x@example.org\nSubject: Hi\n\nHello\n"
        p = subprocess.run([inject, "--tenants", tenants, "--from", "ZOE.AKESSON@fabrikam.com",
                            "--to", "x@example.org"], input=message.encode(), capture_output=True, timeout=30)
        assert p.returncode == 0, p.stderr
        msg = email.message_from_bytes(p.stdout, policy=email.policy.default)
        text = "".join(part.get_content() for part in msg.walk() if part.get_content_maintype() == "text")
        assert "Zoë Åkesson" in text and "+46 8 555 010 00" in text, text


if os.environ.get("SIGRELAY_INJECT") and os.environ.get("SIGRELAY_EXAMPLES"):
    case(sigrelay_accepts_the_output)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    TOOL = os.path.abspath(sys.argv[1])
    CERTS = os.path.abspath(sys.argv[2])
    if not os.path.isfile(os.path.join(CERTS, "relay.pem")):
        sys.exit(f"{CERTS}: no relay.pem (scripts/gen-certs.sh makes it)")
    harness.run(2)
