"""Graph `GET /users` and `/users/delta` pages applied to a set of users.

A page is {"value": [user, ...], "@odata.nextLink" | "@odata.deltaLink": URL}.
Users are kept by `id`, in the order first seen. A later entry for a known id
updates it: properties it gives replace the old ones, a null removes one
(delta pages carry the changed properties). An entry with "@removed" (a
deleted or soft-deleted user) removes the user."""
import json

from . import ToolError, warn


def apply(users, entries, where):
    """Applies page entries to `users` (dict id → properties, insertion-ordered)."""
    if not isinstance(entries, list):
        raise ToolError(f"{where}: \"value\" is not a list")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ToolError(f"{where}: value[{i}]: expected a JSON object")
        uid = entry.get("id")
        if not isinstance(uid, str) or not uid:
            uid = None
        if "@removed" in entry:
            if uid is not None:
                users.pop(uid, None)
            continue
        props = {k: v for k, v in entry.items() if not k.startswith("@odata.")}
        if uid is None:
            users[f"\0{where}[{i}]"] = props  # no id: a user of its own, never updated
        elif uid in users:
            old = users[uid]
            for k, v in props.items():
                if v is None:
                    old.pop(k, None)
                else:
                    old[k] = v
        else:
            users[uid] = {k: v for k, v in props.items() if v is not None}


def load_files(paths):
    """Saved responses, in order → (dict id → properties)."""
    users = {}
    for n, path in enumerate(paths):
        try:
            with open(path, "rb") as f:
                page = json.loads(f.read().decode("utf-8-sig"))
        except OSError as e:
            raise ToolError(f"cannot read {path}: {e.strerror}") from None
        except UnicodeDecodeError:
            raise ToolError(f"{path}: not UTF-8 text") from None
        except ValueError as e:
            raise ToolError(f"{path}: invalid JSON: {e}") from None
        if isinstance(page, list):
            page = {"value": page}  # a bare list of users
        if not isinstance(page, dict) or "value" not in page:
            raise ToolError(f"{path}: expected a Graph response {{\"value\": [...]}}")
        if "error" in page and isinstance(page["error"], dict):
            raise ToolError(f"{path}: a Graph error response: {page['error'].get('code')}")
        apply(users, page["value"], path)
        if n == len(paths) - 1 and "@odata.nextLink" in page:
            warn(f"{path} has an @odata.nextLink: the pages after it are missing")
    return users


def labelled(users):
    """[(label, user)] in order, labelled by id for warnings."""
    return [(f"user {uid}" if not uid.startswith("\0") else uid[1:], user)
            for uid, user in users.items()]
