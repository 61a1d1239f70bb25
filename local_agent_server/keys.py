"""Client session keys: what authorize hands out and the WebSocket upgrade redeems."""

from __future__ import annotations

import secrets
import time


class SessionKeys:
    """Random, single-use keys that expire, each bound to a conversation."""

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._keys: dict[str, tuple[str, float]] = {}

    def issue(self, conversation_id: str) -> str:
        """A new key for a connection to `conversation_id`."""
        now = time.monotonic()
        self._keys = {k: v for k, v in self._keys.items() if v[1] > now}
        key = secrets.token_urlsafe(32)
        self._keys[key] = (conversation_id, now + self._ttl)
        return key

    def redeem(self, key: str) -> str | None:
        """The key's conversation id, or None if it is unknown, used or expired."""
        entry = self._keys.pop(key, None)
        if entry is None or entry[1] <= time.monotonic():
            return None
        return entry[0]
