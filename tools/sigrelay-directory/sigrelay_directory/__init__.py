"""sigrelay-directory: Entra ID users → sigrelay's NDJSON directory.

Modules, one job each:
  attributes   one Graph user (or CSV row made into one) → a directory record
  csv_export   the Entra admin center's "Download users" CSV → Graph-style users
  graph_pages  saved Graph responses (and delta pages) applied to a user set
  directory    records filtered, de-duplicated, sorted; the file written atomically
  graph        MSAL client credentials and Graph GETs (retries, 401 refresh)
  sync         delta query with a saved state file beside the directory
  reload       SIGHUP to the process named by a pid file
  cli          the command line
"""

PROG = "sigrelay-directory"


class ToolError(Exception):
    """An expected failure: printed as one line `sigrelay-directory: MESSAGE`, exit 1."""


def warn(message):
    import sys
    print(f"{PROG}: warning: {message}", file=sys.stderr, flush=True)


def note(message):
    import sys
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)
