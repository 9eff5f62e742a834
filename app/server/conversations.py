"""Past conversations, kept in the browser (`gr.BrowserState`, i.e. localStorage).

The stored value is one JSON object: ``{"v": 1, "users": {user: {kb: {"active": id or
None, "conversations": [{"id", "title", "created", "updated", "turns": [...]}]}}}}``, a
user being the signed-in key's name ("local" without keys), the turns as
app/server/chat_format.py makes them. Per user and knowledge base, at most
`MAX_CONVERSATIONS`, newest first; the whole stays under `MAX_STORE_CHARS` (oldest
conversations go first), since a browser holds about 5 MB per site.

Pure functions on that value: each returns a new one and never trusts the old one's shape
(it comes back from the browser).
"""

from __future__ import annotations

import copy
import json
import time
import uuid

VERSION = 1
MAX_CONVERSATIONS = 50
MAX_STORE_CHARS = 1_500_000
TITLE_CHARS = 80


def empty() -> dict:
    """A store with no conversation in it."""
    return {"v": VERSION, "users": {}}


def _clean(store) -> dict:
    if not isinstance(store, dict) or store.get("v") != VERSION or not isinstance(store.get("users"), dict):
        return empty()
    return copy.deepcopy(store)


def _shelf(store: dict, user: str, kb: str) -> dict:
    """The user's shelf for `kb` in `store` (made if missing, repaired if malformed)."""
    kbs = store["users"].setdefault(user, {})
    if not isinstance(kbs, dict):
        kbs = store["users"][user] = {}
    shelf = kbs.get(kb)
    if not isinstance(shelf, dict) or not isinstance(shelf.get("conversations"), list):
        shelf = kbs[kb] = {"active": None, "conversations": []}
    shelf["conversations"] = [c for c in shelf["conversations"] if _valid(c)]
    return shelf


def _valid(conv) -> bool:
    return isinstance(conv, dict) and isinstance(conv.get("id"), str) and isinstance(conv.get("turns"), list)


def title_of(turns: list) -> str:
    """A conversation's name in the list: its first question, cut short."""
    first = next((str(t.get("q", "")) for t in turns if isinstance(t, dict)), "") or "(empty)"
    first = " ".join(first.split())
    return first if len(first) <= TITLE_CHARS else first[: TITLE_CHARS - 1] + "…"


def save(store, user: str, kb: str, conv_id: str | None, turns: list, now: float | None = None) -> tuple[dict, str | None]:
    """`store` with the conversation `conv_id` (a new one when None) holding `turns`, made the
    active one and moved to the top; and its id. No turns: nothing saved."""
    store = _clean(store)
    if not turns:
        return store, conv_id
    now = time.time() if now is None else now
    shelf = _shelf(store, user, kb)
    convs = shelf["conversations"]
    conv = next((c for c in convs if c["id"] == conv_id), None)
    if conv is None:
        conv = {"id": conv_id or uuid.uuid4().hex[:16], "created": now}
    else:
        convs.remove(conv)
    conv.update(title=title_of(turns), updated=now, turns=copy.deepcopy(list(turns)))
    convs.insert(0, conv)
    del convs[MAX_CONVERSATIONS:]
    shelf["active"] = conv["id"]
    _fit(store, keep=conv)
    return store, conv["id"]


def _fit(store: dict, keep: dict) -> None:
    """Drop the oldest conversations (never `keep`) until the store is under `MAX_STORE_CHARS`."""
    while len(json.dumps(store, ensure_ascii=False)) > MAX_STORE_CHARS:
        shelves = [s for kbs in store["users"].values() if isinstance(kbs, dict) for s in kbs.values() if isinstance(s, dict)]
        candidates = [(c.get("updated", 0), id(c), s) for s in shelves for c in s.get("conversations", []) if c is not keep]
        if not candidates:
            return
        _, oldest, shelf = min(candidates, key=lambda t: (t[0] if isinstance(t[0], (int, float)) else 0, t[1]))
        shelf["conversations"] = [c for c in shelf["conversations"] if id(c) != oldest]


def remove(store, user: str, kb: str, conv_id: str | None) -> dict:
    """`store` without conversation `conv_id`, and with no active conversation."""
    store = _clean(store)
    shelf = _shelf(store, user, kb)
    shelf["conversations"] = [c for c in shelf["conversations"] if c["id"] != conv_id]
    shelf["active"] = None
    return store


def activate(store, user: str, kb: str, conv_id: str | None) -> dict:
    """`store` with `conv_id` (None: a new, still empty, conversation) the one a reload reopens."""
    store = _clean(store)
    shelf = _shelf(store, user, kb)
    shelf["active"] = conv_id if any(c["id"] == conv_id for c in shelf["conversations"]) else None
    return store


def get(store, user: str, kb: str, conv_id: str | None) -> dict | None:
    """Conversation `conv_id` of the user in `kb`, or None."""
    shelf = _shelf(_clean(store), user, kb)
    return next((c for c in shelf["conversations"] if c["id"] == conv_id), None)


def active(store, user: str, kb: str) -> dict | None:
    """The conversation that was open in `kb` when the page was left, or None."""
    shelf = _shelf(_clean(store), user, kb)
    return get(store, user, kb, shelf.get("active"))


def listing(store, user: str, kb: str) -> list[tuple[str, str]]:
    """(label, id) of the user's conversations in `kb`, most recently used first."""
    shelf = _shelf(_clean(store), user, kb)
    out = []
    for conv in shelf["conversations"]:
        n = sum(1 for t in conv["turns"] if isinstance(t, dict))
        label = str(conv.get("title") or title_of(conv["turns"]))
        out.append((f"{label} ({n} questions)" if n > 1 else label, conv["id"]))
    return out
