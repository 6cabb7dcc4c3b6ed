"""The handshake's proofs (docs/protocol.md, section 9)."""

from __future__ import annotations

import hashlib
import hmac

NONCE_SIZE = 32
ROLE_INSTANCE = b"spear-auth-v1 instance"
ROLE_AGENT = b"spear-auth-v1 agent"


def proof(secret: bytes, role: bytes, nonce: bytes, client_nonce: bytes, instance_id: str) -> bytes:
    """HMAC-SHA256(secret, role || 0x00 || nonce || client_nonce || instance_id)."""
    m = hmac.new(secret, digestmod=hashlib.sha256)
    m.update(role)
    m.update(b"\x00")
    m.update(nonce)
    m.update(client_nonce)
    m.update(instance_id.encode("utf-8"))
    return m.digest()
