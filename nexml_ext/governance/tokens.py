"""API tokens: 256-bit random secrets, stored only as SHA-256, compared in constant time.

A token reads ``nxm_<id>_<secret>``: the id (public, 64 bits) finds the stored row, the secret
(256 bits, URL-safe base64) is hashed and compared with ``hmac.compare_digest``. A slow password
hash is unnecessary for secrets this long; a plain SHA-256 keeps authentication cheap.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from ..errors import AuthenticationFailed

PREFIX = "nxm"
_FORMAT = re.compile(r"^nxm_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


def new_token() -> tuple[str, str, str]:
    """A fresh token: (id, secret, the full token to show once)."""
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return token_id, secret, f"{PREFIX}_{token_id}_{secret}"


def parse_token(token: str) -> tuple[str, str]:
    """Split a full token into (id, secret); AuthenticationFailed if it is not one."""
    match = _FORMAT.match(token.strip()) if isinstance(token, str) else None
    if not match:
        raise AuthenticationFailed("token refused: it is not an nexml token (nxm_<id>_<secret>)")
    return match.group(1), match.group(2)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def secret_matches(secret: str, stored_sha256: str) -> bool:
    """Constant-time comparison of a presented secret with its stored hash."""
    return hmac.compare_digest(hash_secret(secret), stored_sha256)
