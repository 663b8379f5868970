"""`sync`: the users from Graph's delta query, `GET /v1.0/users/delta`.

The first run reads every page (@odata.nextLink) up to the @odata.deltaLink;
the link and every user's properties are then saved in the state file (by
default the directory's name + ".delta"). A later run starts from the saved
link and applies the changes to the saved users. A link Graph no longer
accepts (410 Gone, syncStateNotFound, ...) means a full sync."""
import json

from . import ToolError, note
from . import graph_pages
from .attributes import SELECT
from .directory import write_atomic
from .graph import GraphError

FORMAT = "sigrelay-directory delta state"
VERSION = 1
RESYNC_CODES = {"syncStateNotFound", "syncStateInvalid", "resyncRequired",
                "ResyncRequired", "SyncStateNotFound"}
MAX_PAGES = 1_000_000


def select_list(extra):
    select = list(SELECT)
    for item in extra or []:
        for prop in item.split(","):
            prop = prop.strip()
            if prop and prop not in select:
                select.append(prop)
    return select


def load_state(path, identity):
    """(delta link, users) saved for the same tenant, Graph and $select, or None."""
    try:
        with open(path, "rb") as f:
            state = json.loads(f.read().decode("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        note(f"{path}: cannot use the saved delta state ({getattr(e, 'strerror', None) or e}); "
             "doing a full sync")
        return None
    if (not isinstance(state, dict) or state.get("format") != FORMAT
            or state.get("version") != VERSION or not isinstance(state.get("delta_link"), str)
            or not isinstance(state.get("users"), list)):
        note(f"{path}: not a delta state file of this version; doing a full sync")
        return None
    if any(state.get(k) != v for k, v in identity.items()):
        note(f"{path}: saved for another tenant, Graph URL or --select; doing a full sync")
        return None
    users = {}
    for user in state["users"]:
        if isinstance(user, dict) and isinstance(user.get("id"), str):
            users[user["id"]] = user
    return state["delta_link"], users


def save_state(path, identity, delta_link, users):
    head = dict(format=FORMAT, version=VERSION, **identity, delta_link=delta_link)

    def chunks():
        yield json.dumps(head, ensure_ascii=False)[:-1].encode("utf-8") + b', "users": [\n'
        first = True
        for user in users.values():
            if not isinstance(user.get("id"), str):
                continue  # an entry without id cannot be updated by a delta
            yield (b"" if first else b",\n") + json.dumps(user, ensure_ascii=False).encode("utf-8")
            first = False
        yield b"\n]}\n"

    write_atomic(path, chunks(), new_mode=0o600)


def follow(graph, url, users):
    """Pages from `url` up to the delta link: (users, delta link, pages, entries)."""
    pages = entries = 0
    while True:
        if pages >= MAX_PAGES:
            raise ToolError(f"more than {MAX_PAGES:,} pages from Graph; stopped")
        body = graph.get_json(url)
        pages += 1
        value = body.get("value")
        if not isinstance(value, list):
            raise GraphError(f"Graph page {pages}: no \"value\" list in the answer")
        graph_pages.apply(users, value, f"Graph page {pages}")
        entries += len(value)
        if isinstance(body.get("@odata.nextLink"), str):
            url = body["@odata.nextLink"]
        elif isinstance(body.get("@odata.deltaLink"), str):
            graph.check_link(body["@odata.deltaLink"])
            return users, body["@odata.deltaLink"], pages, entries
        else:
            raise GraphError(f"Graph page {pages} has neither @odata.nextLink nor @odata.deltaLink")


def run(graph, state_path, identity, full=False):
    """(users, delta link, what was done) — nothing is written here."""
    start = f"{graph.base}/v1.0/users/delta?$select={','.join(identity['select'])}"
    saved = None if full else load_state(state_path, identity)
    if saved is not None:
        link, users = saved
        try:
            users, link, pages, entries = follow(graph, link, users)
            return users, link, f"{entries:,} changes since the last sync"
        except GraphError as e:
            if e.status != 410 and e.code not in RESYNC_CODES:
                raise
            why = f"HTTP {e.status} {e.code}" if e.code else f"HTTP {e.status}"
            note(f"the saved delta link was refused ({why}); doing a full sync")
    users, link, pages, _ = follow(graph, start, {})
    return users, link, f"full sync, {pages:,} pages" if pages != 1 else "full sync, 1 page"
