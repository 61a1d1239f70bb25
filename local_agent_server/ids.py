"""Random identifiers in Layercode's style (`conv_…`, `sess_…`, `turn_…`)."""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    """A fresh id; random, so ids from two runs or two servers never collide."""
    return f"{prefix}_{secrets.token_hex(8)}"
