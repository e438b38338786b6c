"""Field encryption at rest (AES-256-GCM) and blind indexes (HMAC-SHA256) for exact-match search.

Pure: the key is passed in; `mmis.customers` builds one cipher from settings.FIELD_KEY.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class FieldCipher:
    VERSION = b"\x01"

    def __init__(self, key: str) -> None:
        material = hashlib.sha256(key.encode()).digest()
        self._aead = AESGCM(hashlib.sha256(b"enc" + material).digest())
        self._index_key = hashlib.sha256(b"idx" + material).digest()

    def encrypt(self, plaintext: str) -> str:
        if not plaintext:
            return ""
        nonce = os.urandom(12)
        blob = self.VERSION + nonce + self._aead.encrypt(nonce, plaintext.encode(), None)
        return base64.b64encode(blob).decode()

    def decrypt(self, token: str) -> str:
        if not token:
            return ""
        blob = base64.b64decode(token)
        if blob[:1] != self.VERSION:
            raise ValueError("unknown ciphertext version")
        return self._aead.decrypt(blob[1:13], blob[13:], None).decode()

    def blind_index(self, value: str) -> str:
        """Deterministic keyed hash of a normalised value: equal inputs match, nothing leaks."""
        if not value:
            return ""
        return hmac.new(self._index_key, value.strip().upper().encode(), hashlib.sha256).hexdigest()[:32]


def mask(value: str, *, keep_start: int, keep_end: int, fill: str = "*") -> str:
    if not value:
        return ""
    if len(value) <= keep_start + keep_end:
        return fill * len(value)
    return value[:keep_start] + fill * (len(value) - keep_start - keep_end) + value[len(value) - keep_end :]
