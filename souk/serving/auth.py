"""API keys: an admin key (writes) and a search key (read-only), sent as `Authorization: Bearer KEY`.

Keys come from the environment (`SOUK_ADMIN_KEY`, `SOUK_SEARCH_KEY`) or the caller; compared in
constant time and never logged. With no keys set the API is open, so the server binds to loopback only.
"""
from __future__ import annotations

import hmac
import os
from dataclasses import dataclass

from souk.errors import ConfigError
from souk.limits import MIN_KEY_CHARS



@dataclass(frozen=True)
class Keys:
    admin: str | None = None
    search: str | None = None

    @classmethod
    def from_env(cls) -> "Keys":
        keys = cls(os.environ.get("SOUK_ADMIN_KEY") or None, os.environ.get("SOUK_SEARCH_KEY") or None)
        keys.check()
        return keys

    @property
    def enabled(self) -> bool:
        return self.admin is not None

    def check(self) -> None:
        if self.search and not self.admin:
            raise ConfigError("SOUK_SEARCH_KEY is set without SOUK_ADMIN_KEY: set both, or neither for an "
                              "open loopback server")
        for name, key in (("SOUK_ADMIN_KEY", self.admin), ("SOUK_SEARCH_KEY", self.search)):
            if key is not None and len(key) < MIN_KEY_CHARS:
                raise ConfigError(f"{name} is too short: use at least {MIN_KEY_CHARS} random characters")

    def role(self, authorization: str | None) -> str | None:
        """'admin', 'search' or None for the bearer token in an Authorization header."""
        if not authorization or not authorization.startswith("Bearer "):
            return None
        token = authorization[len("Bearer "):].strip().encode()
        if self.admin and hmac.compare_digest(token, self.admin.encode()):
            return "admin"
        if self.search and hmac.compare_digest(token, self.search.encode()):
            return "search"
        return None
