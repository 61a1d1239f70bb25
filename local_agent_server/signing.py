"""Webhook signatures, as the official Node server SDK's `verifySignature` checks them.

Header `layercode-signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`.
Receivers check the raw body, so a sender must sign exactly the bytes it sends: compact JSON
with non-ASCII left unescaped, which is also what re-serialising the parsed body gives in
JavaScript (`JSON.stringify(JSON.parse(body))`, which some backends verify instead), as long
as whole-number floats are written as integers: JavaScript writes 1.0 as `1`.
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


def _js_numbers(value: Any) -> Any:
    """`value` with whole-number floats as ints, as JSON.stringify writes them (1.0 -> 1).

    Other floats come out the same in both languages, except below 1e-4 in magnitude, where
    Python writes an exponent and JavaScript does not (1e-05, 0.00001): the server sends none.
    """
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) < 1e21 else value
    if isinstance(value, Mapping):
        return {key: _js_numbers(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_js_numbers(item) for item in value]
    return value


def encode_body(payload: Mapping[str, Any]) -> bytes:
    """The exact bytes to sign and send for a webhook payload.

    The same bytes as `JSON.stringify` of the parsed payload, so that a backend that verifies
    the re-serialised body (rather than the raw one) accepts it too.
    """
    return json.dumps(_js_numbers(payload), separators=(",", ":"), ensure_ascii=False).encode()


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
