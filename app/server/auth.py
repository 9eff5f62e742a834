"""API keys: bearer tokens with read or read-write rights per knowledge base.

Keys come from a TOML file (``--keys FILE`` or ``$KB_API_KEYS_FILE``)::

    [[key]]
    name = "admin"
    token = "a-long-random-string"
    kbs = { "*" = "rw" }          # every knowledge base, read and write

    [[key]]
    name = "reader"
    token = "another-long-random-string"
    kbs = { sample = "r" }
    rate_limit = 120              # optional: requests a minute for this key (app/server/rate_limit.py)

or inline from ``$KB_API_KEYS``: ``name:token:rights:kb1,kb2`` entries separated by ``;``
(rights ``r`` or ``rw``; ``*`` for every knowledge base). With no key configured the
server runs in local-only mode: bound to 127.0.0.1, everyone local may read and write.

(The variables are not ``KBQA_*``: those are settings.)
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ENV_KEYS = "KB_API_KEYS"
ENV_KEYS_FILE = "KB_API_KEYS_FILE"
RIGHTS = ("r", "rw")
MIN_TOKEN_CHARS = 8


class KeysError(ValueError):
    pass


@dataclass(frozen=True)
class Principal:
    """Who is asking: a key's name and its rights ({kb or "*": "r" | "rw"})."""

    name: str
    rights: Mapping[str, str] = field(default_factory=dict)
    rate_limit: float | None = None  # requests a minute; None: the server's --rate-limit

    def can_read(self, kb: str) -> bool:
        return self._right(kb) in RIGHTS

    def can_write(self, kb: str) -> bool:
        return self._right(kb) == "rw"

    def _right(self, kb: str) -> str | None:
        return self.rights.get(kb, self.rights.get("*"))

    def readable(self, kbs: list[str]) -> list[str]:
        return [kb for kb in kbs if self.can_read(kb)]

    def writable(self, kbs: list[str]) -> list[str]:
        return [kb for kb in kbs if self.can_write(kb)]


LOCAL = Principal("local", {"*": "rw"})


@dataclass(frozen=True)
class ApiKey:
    name: str
    token: str
    rights: Mapping[str, str]
    rate_limit: float | None = None


class KeyRing:
    def __init__(self, keys: list[ApiKey]):
        names = [k.name for k in keys]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise KeysError(f"duplicate key names: {', '.join(sorted(dupes))}")
        tokens = [k.token for k in keys]
        if len(set(tokens)) != len(tokens):
            raise KeysError("two keys share the same token")
        self.keys = keys

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def lookup(self, token: str | None) -> Principal | None:
        """The principal for a token, comparing against every key in constant time."""
        if not token:
            return None
        given = token.encode("utf-8")
        found = None
        for key in self.keys:
            if hmac.compare_digest(given, key.token.encode("utf-8")):
                found = key
        return Principal(found.name, dict(found.rights), found.rate_limit) if found else None

    def login(self, username: str, password: str) -> bool:
        """Gradio login: user name = key name, password = its token."""
        principal = self.lookup(password)
        return principal is not None and hmac.compare_digest(principal.name.encode(), (username or "").encode())

    def principal_named(self, name: str | None) -> Principal | None:
        for key in self.keys:
            if key.name == name:
                return Principal(key.name, dict(key.rights), key.rate_limit)
        return None

    def check_kbs(self, known: list[str]) -> list[str]:
        """Warnings for rights naming knowledge bases this server does not hold."""
        return [f"key {k.name!r} names unknown knowledge base {kb!r}" for k in self.keys for kb in k.rights if kb != "*" and kb not in known]


def _key(name: str, token: str, rights: Mapping[str, str], where: str, rate_limit=None) -> ApiKey:
    if not name or not isinstance(name, str):
        raise KeysError(f"{where}: a key needs a name")
    if not isinstance(token, str) or len(token) < MIN_TOKEN_CHARS:
        raise KeysError(f"{where}: key {name!r} needs a token of at least {MIN_TOKEN_CHARS} characters")
    if not isinstance(rights, Mapping) or not rights:
        raise KeysError(f'{where}: key {name!r} needs kbs = {{ KB = "r" | "rw" }}')
    for kb, right in rights.items():
        if right not in RIGHTS:
            raise KeysError(f"{where}: key {name!r}, knowledge base {kb!r}: rights must be 'r' or 'rw', not {right!r}")
    if rate_limit is not None and (isinstance(rate_limit, bool) or not isinstance(rate_limit, (int, float)) or rate_limit < 0):
        raise KeysError(f"{where}: key {name!r}: rate_limit must be a number of requests a minute (0 = none), not {rate_limit!r}")
    return ApiKey(name, token, dict(rights), None if rate_limit is None else float(rate_limit))


def parse_keys_file(path: Path) -> list[ApiKey]:
    if not path.is_file():
        raise KeysError(f"keys file {path}: not found")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise KeysError(f"keys file {path}: invalid TOML ({exc})") from exc
    entries = data.get("key")
    if not isinstance(entries, list):
        raise KeysError(f"keys file {path}: expected [[key]] tables with name, token and kbs")
    return [_key(e.get("name"), e.get("token"), e.get("kbs"), f"keys file {path}, key #{n}", e.get("rate_limit")) for n, e in enumerate(entries, 1)]


def parse_keys_env(value: str) -> list[ApiKey]:
    keys = []
    for n, entry in enumerate((e.strip() for e in value.split(";")), 1):
        if not entry:
            continue
        parts = entry.split(":")
        if len(parts) != 4:
            raise KeysError(f"${ENV_KEYS} entry #{n}: expected name:token:rights:kb1,kb2 (got {len(parts)} fields)")
        name, token, right, kbs = parts
        keys.append(_key(name, token, {kb.strip(): right for kb in kbs.split(",") if kb.strip()}, f"${ENV_KEYS} entry #{n}"))
    return keys


def load_keyring(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> KeyRing:
    env = os.environ if env is None else env
    keys: list[ApiKey] = []
    path = path or env.get(ENV_KEYS_FILE)
    if path:
        keys += parse_keys_file(Path(path))
    if env.get(ENV_KEYS):
        keys += parse_keys_env(env[ENV_KEYS])
    return KeyRing(keys)


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
