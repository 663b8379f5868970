"""The command line: `import` (a CSV export or saved Graph responses) and
`sync` (Graph delta query). Exit status 0 on success, 1 on an error (one line
on standard error), 2 on a usage error, 128 + N when killed by signal N
(SIGINT, SIGTERM) with the files either old or new."""
import argparse
import os
import signal
import sys

from . import PROG, ToolError
from . import csv_export, directory, graph_pages

DEFAULT_GRAPH = "https://graph.microsoft.com"


def add_output_options(p):
    p.add_argument("--out", required=True, metavar="FILE",
                   help="the directory file to write (replaced atomically)")
    p.add_argument("--reload-pidfile", metavar="PIDFILE",
                   help="after writing, send SIGHUP to the process whose pid PIDFILE holds")
    p.add_argument("--quiet", action="store_true", help="no summary line on standard output")


def parser():
    top = argparse.ArgumentParser(
        prog=PROG,
        description="Writes sigrelay's user directory (NDJSON, one user a line) from "
                    "Microsoft Entra ID. See docs/directory-tool.md.")
    sub = top.add_subparsers(dest="command", metavar="COMMAND", required=True)

    imp = sub.add_parser(
        "import", help="from a \"Download users\" CSV or saved Graph responses",
        description="Writes the directory from the Entra admin center's \"Download users\"\n"
                    "CSV export, or from saved Microsoft Graph GET /v1.0/users (or /users/delta)\n"
                    "responses, applied in the order given.",
        epilog="examples:\n"
               f"  {PROG} import --csv exportUsers.csv --out /etc/sigrelay/fabrikam-users.ndjson\n"
               f"  {PROG} import --graph-json page1.json page2.json --out users.ndjson",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    src = imp.add_mutually_exclusive_group(required=True)
    src.add_argument("--csv", metavar="FILE", help="the CSV export (UTF-8, with or without BOM)")
    src.add_argument("--graph-json", metavar="FILE", nargs="+",
                     help="saved Graph responses {\"value\": [...]}, one file a page")
    add_output_options(imp)
    imp.set_defaults(func=run_import)

    syn = sub.add_parser(
        "sync", help="from Microsoft Graph (client credentials, delta query)",
        description="Reads the users from Microsoft Graph (GET /v1.0/users/delta) with an app\n"
                    "registration's client secret, and writes the directory. The delta link and\n"
                    "the users' state are saved beside it (FILE.delta): the next run fetches\n"
                    "only the changes.",
        epilog="example:\n"
               f"  {PROG} sync --tenant-id 8c3d...e1 --client-id 5f1a...9b \\\n"
               "      --client-secret-file /etc/sigrelay/fabrikam.secret \\\n"
               "      --out /etc/sigrelay/fabrikam-users.ndjson --reload-pidfile /run/sigrelay.pid",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    syn.add_argument("--tenant-id", required=True, metavar="ID", help="the Entra tenant (directory) ID")
    syn.add_argument("--client-id", required=True, metavar="ID", help="the app registration's client ID")
    syn.add_argument("--client-secret-file", required=True, metavar="FILE",
                     help="a file holding the client secret (a trailing newline is ignored)")
    syn.add_argument("--authority", metavar="URL",
                     help="the OAuth2 authority (default https://login.microsoftonline.com/TENANT-ID)")
    syn.add_argument("--graph-url", default=DEFAULT_GRAPH, metavar="URL",
                     help=f"Microsoft Graph's base URL (default {DEFAULT_GRAPH})")
    syn.add_argument("--ca-file", metavar="PEM",
                     help="trust these CA certificates instead of the system's "
                          "(default: $REQUESTS_CA_BUNDLE, else the system's)")
    syn.add_argument("--state-file", metavar="FILE", help="the delta state (default FILE.delta, FILE as --out)")
    syn.add_argument("--full", action="store_true", help="ignore the saved delta state: read every user")
    syn.add_argument("--select", action="append", metavar="PROP[,PROP]",
                     help="more Graph user properties to read (repeatable)")
    syn.add_argument("--verbose", action="store_true", help="each Graph request on standard error")
    add_output_options(syn)
    syn.set_defaults(func=run_sync)
    return top


def write_directory(args, users):
    result = directory.build(users)
    directory.write_atomic(args.out, directory.ndjson_lines(result.records))
    return result


def report(args, result, info=None):
    if not args.quiet:
        line = f"{PROG}: {result.summary(args.out)}" + (f"; {info}" if info else "")
        print(line, flush=True)
    if args.reload_pidfile:
        from . import reload
        reload.send_sighup(args.reload_pidfile)
    return 0


def run_import(args):
    if args.csv:
        users = csv_export.read(args.csv)
    else:
        users = graph_pages.labelled(graph_pages.load_files(args.graph_json))
    result = write_directory(args, users)
    return report(args, result)


def read_secret(path):
    try:
        with open(path, encoding="utf-8") as f:
            secret = f.read().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as e:
        raise ToolError(f"cannot read the client secret from {path}: "
                        f"{getattr(e, 'strerror', None) or 'not UTF-8 text'}") from None
    if not secret.strip():
        raise ToolError(f"{path}: the client secret is empty")
    return secret


def run_sync(args):
    try:
        from . import graph, sync
    except ImportError as e:
        raise ToolError(f"sync needs the Python modules msal and requests ({e}); on Debian: "
                        "apt install python3-msal python3-requests") from None
    if "/" in args.tenant_id or not args.tenant_id.strip():
        raise ToolError(f"--tenant-id: expected a tenant ID or domain, got {args.tenant_id!r}")
    secret = read_secret(args.client_secret_file)
    verify = True  # the system's CAs, or $REQUESTS_CA_BUNDLE
    if args.ca_file:
        if not os.path.isfile(args.ca_file) or not os.access(args.ca_file, os.R_OK):
            raise ToolError(f"--ca-file {args.ca_file}: not a readable file")
        verify = args.ca_file
    base = args.graph_url.rstrip("/")
    if not base.startswith("https://"):
        raise ToolError(f"--graph-url {args.graph_url}: expected an https:// URL")
    if args.authority and not args.authority.startswith("https://"):
        raise ToolError(f"--authority {args.authority}: expected an https:// URL")
    tokens = graph.Tokens(args.tenant_id, args.client_id, secret, args.authority,
                          f"{base}/.default", verify)
    client = graph.Graph(base, tokens, verify, verbose=args.verbose)
    identity = {"tenant_id": args.tenant_id, "graph_url": base,
                "select": sync.select_list(args.select)}
    state_path = args.state_file or args.out + ".delta"
    users, link, info = sync.run(client, state_path, identity, full=args.full)
    # The directory first: if saving the state fails, the next run applies
    # the same changes again, which changes nothing. sigrelay is reloaded
    # all the same, since its directory changed.
    result = write_directory(args, graph_pages.labelled(users))
    try:
        sync.save_state(state_path, identity, link, users)
    except ToolError as e:
        report(args, result, info)
        raise ToolError(f"{args.out} was written, but not the delta state: {e}") from None
    return report(args, result, info)


def terminated(signum, frame):
    raise SystemExit(128 + signum)  # unwinds: a half-written temporary file is removed


def main(argv=None):
    signal.signal(signal.SIGTERM, terminated)
    try:
        args = parser().parse_args(argv)
        return args.func(args)
    except ToolError as e:
        print(f"{PROG}: {e}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
