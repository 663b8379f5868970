"""--reload-pidfile: SIGHUP to the process whose decimal pid the file holds
(sigrelay reloads its tenants and directories on SIGHUP)."""
import os
import signal

from . import ToolError


def send_sighup(pidfile):
    """Returns the pid signalled."""
    try:
        with open(pidfile, "rb") as f:
            text = f.read(64).decode("ascii", "replace").strip()
    except OSError as e:
        raise ToolError(f"cannot read pid file {pidfile}: {e.strerror}; sigrelay not reloaded") from None
    if not text.isdigit() or int(text) <= 1:
        raise ToolError(f"pid file {pidfile}: expected a process id, got {text[:20]!r}; "
                        "sigrelay not reloaded")
    pid = int(text)
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise ToolError(f"pid file {pidfile}: no process {pid} (stale pid file?); "
                        "sigrelay not reloaded") from None
    except PermissionError:
        raise ToolError(f"pid file {pidfile}: not allowed to signal process {pid}; "
                        "sigrelay not reloaded") from None
    return pid
