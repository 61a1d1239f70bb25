"""Webhook signatures, as the official Node server SDK's `verifySignature` checks them.

Header `layercode-signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`.
Receivers check the raw body, so a sender must sign exactly the bytes it sends: compact JSON
with non-ASCII left unescaped, which is also what re-serialising the parsed body gives in
JavaScript.
"""

from __future__ import annotations

from collections.abc import Mapping
import hashlib
import hmac
import json
import time
from typing import Any

SIGNATURE_HEADER = "layercode-signature"
TOLERANCE_SECONDS = 300.0
"""How far a signature's timestamp may be from the receiver's clock."""


def encode_body(payload: Mapping[str, Any]) -> bytes:
    """The exact bytes to sign and send for a webhook payload."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The `layercode-signature` header value for `body` sent at `timestamp`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify(
    secret: str,
    body: bytes,
    header: str | None,
    *,
    now: float | None = None,
    tolerance: float = TOLERANCE_SECONDS,
) -> bool:
    """Whether `header` signs `body` with `secret` at a time within `tolerance` of `now`."""
    if not header:
        return False
    fields: dict[str, str] = {}
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        fields[name] = value
    try:
        timestamp = int(fields.get("t", ""))
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp).rpartition("v1=")[2]
    return hmac.compare_digest(expected, fields.get("v1", ""))
