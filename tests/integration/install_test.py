"""`meson install` into a staging folder (--destdir): every binary, the five
manual pages, the systemd unit and the example configuration land where
docs/operations.md says; each page renders with man(1) without a troff
warning, names every flag its program's --help names and carries the
program's own --man output; the installed example tenants file loads with
the installed sigrelay-inject once certificates are put where it names them.

usage: install_test.py MESON BUILD_DIR SOURCE_DIR CERTS_DIR PREFIX BINDIR MANDIR SYSCONFDIR DATADIR UNITDIR [case ...]
(the directories are meson's absolute ones, as `meson install` will use them)"""
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile

import harness
from harness import case

(MESON, BUILD, SOURCE, CERTS, PREFIX, BINDIR, MANDIR, SYSCONFDIR, DATADIR,
 UNITDIR) = sys.argv[1:11]

BINARIES = ["sigrelay", "smarthost-sink", "smtp-blaster", "sigrelay-inject", "sigrelay-directory"]
PAGES = {"sigrelay": "man8/sigrelay.8", "smarthost-sink": "man8/smarthost-sink.8",
         "smtp-blaster": "man1/smtp-blaster.1", "sigrelay-inject": "man1/sigrelay-inject.1",
         "sigrelay-directory": "man1/sigrelay-directory.1"}
# A flag as --help writes it: two dashes, a lower-case name.
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*[a-z0-9]")

_staged = {}


def staged():
    """The destdir, installed once for every case of this run."""
    if "root" not in _staged:
        root = tempfile.mkdtemp(prefix="sigrelay-install-")
        r = subprocess.run([MESON, "install", "-C", BUILD, "--destdir", root, "--no-rebuild", "--quiet"],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"meson install exited {r.returncode}:\n{r.stdout}{r.stderr}"
        _staged["root"] = root
    return _staged["root"]


def under(path):
    """An absolute install path, inside the destdir."""
    return os.path.join(staged(), path.lstrip("/"))


def installed_files():
    root = staged()
    out = []
    for d, _dirs, files in os.walk(root):
        out += ["/" + os.path.relpath(os.path.join(d, f), root) for f in files]
    return sorted(out)


def page_path(program):
    return under(os.path.join(MANDIR, PAGES[program]))


def tool_env():
    # The installed sigrelay-directory looks for its modules in
    # <prefix>/<datadir>/sigrelay, which is inside the destdir here.
    return dict(os.environ, PYTHONPATH=under(os.path.join(DATADIR, "sigrelay")), PYTHONDONTWRITEBYTECODE="1")


def run_tool(program, args):
    return subprocess.run([under(os.path.join(BINDIR, program))] + args, capture_output=True, text=True,
                          timeout=60, env=tool_env())


def help_flags(program):
    """Every flag the program's --help (and each subcommand's) names."""
    texts = [run_tool(program, ["--help"])]
    if program == "sigrelay-directory":
        texts += [run_tool(program, [sub, "--help"]) for sub in ("import", "sync")]
    for r in texts:
        assert r.returncode == 0, f"{program} --help exited {r.returncode}: {r.stderr}"
    flags = set()
    for r in texts:
        flags |= set(FLAG.findall(r.stdout))
    assert len(flags) >= 3, f"{program} --help names too few flags: {sorted(flags)}"
    return flags


def render(page):
    """man -l PAGE as a reader sees it, and what troff said on the way."""
    env = dict(os.environ, MANPAGER="cat", PAGER="cat", MANWIDTH="80", LC_ALL="C.UTF-8", MAN_KEEP_FORMATTING="")
    env.pop("MANOPT", None)
    r = subprocess.run(["man", "-l", page], capture_output=True, text=True, timeout=60, env=env)
    # man-db leaves out groff's own warnings; groff -ww prints all of them.
    g = subprocess.run(["groff", "-man", "-ww", "-z", "-Tutf8", page], capture_output=True, text=True,
                       timeout=60, env=env)
    return r, g


@case
def every_file_lands_in_its_place():
    for b in BINARIES:
        path = under(os.path.join(BINDIR, b))
        assert os.path.isfile(path), f"{path} is missing"
        mode = os.stat(path).st_mode
        assert mode & stat.S_IXUSR and mode & stat.S_IXOTH, f"{path} is not executable: {oct(mode)}"
    for program in PAGES:
        assert os.path.isfile(page_path(program)), f"{page_path(program)} is missing"
    # The unit: where systemd looks for this prefix, and the file as shipped.
    assert os.path.normpath(UNITDIR) == os.path.join(PREFIX, "lib", "systemd", "system"), UNITDIR
    unit = under(os.path.join(UNITDIR, "sigrelay.service"))
    with open(unit, "rb") as f, open(os.path.join(SOURCE, "packaging", "sigrelay.service"), "rb") as g:
        assert f.read() == g.read(), f"{unit} differs from packaging/sigrelay.service"
    # Every file of examples/ is in <sysconfdir>/sigrelay, with its relative path.
    examples = os.path.join(SOURCE, "examples")
    conf = under(os.path.join(SYSCONFDIR, "sigrelay"))
    for d, _dirs, files in os.walk(examples):
        for f in files:
            rel = os.path.relpath(os.path.join(d, f), examples)
            assert os.path.isfile(os.path.join(conf, rel)), f"{rel} is not installed in {conf}"
            if rel != "tenants.json":
                with open(os.path.join(d, f), "rb") as a, open(os.path.join(conf, rel), "rb") as b:
                    assert a.read() == b.read(), f"{rel} differs from examples/{rel}"
    assert os.path.isfile(under(os.path.join(DATADIR, "sigrelay", "sigrelay_directory", "cli.py")))
    print("installed:\n  " + "\n  ".join(installed_files()))


@case
def the_installed_tenants_file_names_certificates_beside_it():
    with open(under(os.path.join(SYSCONFDIR, "sigrelay", "tenants.json")), encoding="utf-8") as f:
        text = f.read()
    assert "../" not in text, "the installed tenants file points outside its folder"
    names = re.findall(r'"(?:client_cert|client_key|smart_host_ca)": "([^"]+)"', text)
    assert len(names) == 6 and all(n.startswith("certs/") for n in names), names


@case
def man_pages_render_without_a_warning():
    for program in PAGES:
        r, g = render(page_path(program))
        assert r.returncode == 0, f"man -l {program}: exit {r.returncode}: {r.stderr}"
        assert not r.stderr.strip(), f"man -l {program} warned:\n{r.stderr}"
        assert g.returncode == 0 and not g.stderr.strip(), f"groff -ww {program} warned:\n{g.stderr}"
        for heading in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "SEE ALSO"):
            assert re.search(rf"^{heading}$", r.stdout, re.M), f"{program}: no {heading} section"
        name = re.search(r"^NAME\n\s+(\S+)\s+-\s", r.stdout, re.M)
        assert name and name.group(1) == program, f"{program}: NAME says {name and name.group(1)}"
        # \- everywhere a flag is written: no typographic hyphen or minus sign.
        assert "\u2010" not in r.stdout.replace("\u2010\n", "") and "\u2212" not in r.stdout, \
            f"{program}: a flag renders with a non-ASCII dash"


@case
def man_pages_name_every_flag_of_help():
    for program in PAGES:
        r, _ = render(page_path(program))
        shown = set(FLAG.findall(r.stdout))
        missing = sorted(help_flags(program) - shown)
        assert not missing, f"{program}.{PAGES[program][-1]} lacks {missing}"


@case
def man_pages_carry_the_installed_programs_own_man_output():
    for program in PAGES:
        if program == "sigrelay-directory":
            continue  # argparse, rendered by packaging/man/make-page.py (flags checked above)
        r = run_tool(program, ["--man"])
        assert r.returncode == 0 and r.stdout.startswith(".SH SYNOPSIS\n"), f"{program} --man: {r.stderr}"
        with open(page_path(program), encoding="utf-8") as f:
            page = f.read()
        # The SYNOPSIS goes before the page's DESCRIPTION, the OPTIONS after it.
        synopsis, sep, options = r.stdout.partition("\n.SH OPTIONS\n")
        assert sep, f"{program} --man has no OPTIONS section"
        for part in (synopsis + "\n", ".SH OPTIONS\n" + options):
            assert part in page, f"{program}: the installed page was not built from this --man output"


def put_certs(conf):
    d = os.path.join(conf, "certs")
    os.makedirs(d, exist_ok=True)
    for name in ("ca.pem", "S5HG3DCG14.pem", "S5HG3DCG14.key", "K7QW2PLM55.pem", "K7QW2PLM55.key"):
        shutil.copy(os.path.join(CERTS, name), d)
    return d


@case
def installed_example_loads_once_its_certificates_are_in_place():
    conf = under(os.path.join(SYSCONFDIR, "sigrelay"))
    tenants = os.path.join(conf, "tenants.json")
    shutil.rmtree(os.path.join(conf, "certs"), ignore_errors=True)
    r = run_tool("sigrelay-inject", ["--tenants", tenants, "--check"])
    # Without them the file is refused, naming a path under certs/ beside it.
    assert r.returncode == 78, f"--check without certificates: exit {r.returncode}: {r.stdout}{r.stderr}"
    assert "certs/" in r.stderr, r.stderr
    certs = put_certs(conf)
    try:
        r = run_tool("sigrelay-inject", ["--tenants", tenants, "--check"])
        assert r.returncode == 0, f"--check: exit {r.returncode}: {r.stderr}"
        assert "OK, 2 tenant(s): fabrikam (5 users), contoso (5 users)" in r.stdout, r.stdout
        # And a message gets the installed template and the installed directory's details.
        msg = "From: jane.doe@fabrikam.com\nTo: bob@example.com\nSubject: hi\n\nHi Bob,\n"
        p = subprocess.run([under(os.path.join(BINDIR, "sigrelay-inject")), "--tenants", tenants,
                            "--from", "jane.doe@fabrikam.com", "--to", "bob@example.com"],
                           input=msg, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        assert "Chief Executive Officer" in p.stdout and "SignatureContoso: true" in p.stdout, p.stdout
    finally:
        shutil.rmtree(certs, ignore_errors=True)


if __name__ == "__main__":
    try:
        harness.run(10)
    finally:
        if "root" in _staged:
            shutil.rmtree(_staged["root"], ignore_errors=True)
