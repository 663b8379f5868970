"""Users → the directory sigrelay loads: records filtered (attributes.to_record),
one per address (the first wins, compared as sigrelay does: ASCII case
ignored), sorted by address, written as NDJSON through a temporary file in the
same folder that replaces the old file only once it is complete on disk."""
import json
import os
import stat
import tempfile

from . import ToolError, warn
from .attributes import DISABLED, GUEST, INVALID, NO_MAIL, address_problem, to_record

MAX_WARNINGS = 20  # per kind; the rest are only counted
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_lower(s):
    return s.translate(_ASCII_LOWER)


class Result:
    def __init__(self):
        self.records = []
        self.skipped = {DISABLED: 0, GUEST: 0, NO_MAIL: 0, INVALID: 0, "duplicate": 0}

    def summary(self, path):
        s = self.skipped
        parts = [f"{s[DISABLED]:,} disabled", f"{s[NO_MAIL]:,} without mail",
                 plural(s[GUEST], "guest")]
        if s["duplicate"]:
            parts.append(plural(s["duplicate"], "duplicate address", "duplicate addresses"))
        if s[INVALID]:
            parts.append(plural(s[INVALID], "invalid address", "invalid addresses"))
        return f"wrote {plural(len(self.records), 'user')} to {path}; skipped " + ", ".join(parts)


def plural(n, one, many=None):
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def build(labelled_users):
    """[(label, user)] → Result with the records in output order."""
    result = Result()
    first = {}  # lower-cased address → label of the user kept
    warned = {"duplicate": 0, INVALID: 0}
    for label, user in labelled_users:
        record, reason = to_record(user)
        if reason == INVALID:
            if warned[INVALID] < MAX_WARNINGS:
                warn(f"{label}: address {json.dumps(user.get('mail'), ensure_ascii=False)} "
                     f"{address_problem(user['mail'].strip())}; skipped")
            warned[INVALID] += 1
        if reason:
            result.skipped[reason] += 1
            continue
        key = ascii_lower(record["email"])
        if key in first:
            if warned["duplicate"] < MAX_WARNINGS:
                warn(f"{label}: duplicate address {record['email']} (kept {first[key]}); skipped")
            warned["duplicate"] += 1
            result.skipped["duplicate"] += 1
            continue
        first[key] = label
        result.records.append(record)
    for kind, what in (("duplicate", "duplicate addresses"), (INVALID, "invalid addresses")):
        if warned[kind] > MAX_WARNINGS:
            warn(f"... and {warned[kind] - MAX_WARNINGS:,} more {what}")
    result.records.sort(key=lambda r: (ascii_lower(r["email"]), r["email"]))
    return result


def ndjson_lines(records):
    for record in records:
        yield (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")


def write_atomic(path, chunks, new_mode=0o644):
    """Writes `chunks` (bytes) to `path`: a temporary file beside it, fsync,
    rename over it, fsync of the folder. On any failure the old file is
    untouched and the temporary file removed. A symbolic link is followed
    (its target is replaced); an existing file's mode and owner are kept."""
    target = os.path.realpath(path)
    folder = os.path.dirname(target)
    try:
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(target) + ".", suffix=".tmp",
                                   dir=folder)
    except OSError as e:
        raise ToolError(f"cannot write {path}: {e.strerror}; the old file is unchanged") from None
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        try:
            st = os.stat(target)
            os.chmod(tmp, stat.S_IMODE(st.st_mode))
            if os.geteuid() == 0:
                os.chown(tmp, st.st_uid, st.st_gid)
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, new_mode & ~umask)
        os.replace(tmp, target)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise ToolError(f"cannot write {path}: {e.strerror or e}; the old file is unchanged") from None
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass  # the rename is done; a folder that cannot be synced is not an error
