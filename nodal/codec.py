"""Payload encryption for Temporal (NODAL_ENCRYPTION_KEY): histories hold ciphertext, not customers' data.

Every payload a client or worker sends to Temporal (workflow inputs, activity arguments and results,
signals, Updates, queries, memos) is sealed with AES-256-GCM under a key derived from the configured
secret. The key id travels in the payload's metadata, so keys can be rotated: the new key encrypts,
NODAL_ENCRYPTION_PREVIOUS_KEYS still decrypt what was written before. Search attributes are not
payloads of this kind and stay readable (they hold ids and statuses, no personal data).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Iterable, Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes, PayloadCodec

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"


def derive(secret: str) -> tuple[str, bytes]:
    """A 256-bit key from the configured secret, and the id it is known by (never the key itself)."""
    key = hashlib.sha256(b"nodal-payload-key:" + secret.encode()).digest()
    return hashlib.sha256(key).hexdigest()[:16], key


class EncryptionCodec(PayloadCodec):
    def __init__(self, secret: str, previous: Iterable[str] = ()):
        self.key_id, key = derive(secret)
        self.keys = {self.key_id: AESGCM(key)}
        for old in previous:
            kid, k = derive(old)
            self.keys.setdefault(kid, AESGCM(k))

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for p in payloads:
            nonce = os.urandom(12)
            out.append(Payload(
                metadata={"encoding": ENCODING, KEY_ID: self.key_id.encode()},
                data=nonce + self.keys[self.key_id].encrypt(nonce, p.SerializeToString(), None)))
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for p in payloads:
            if p.metadata.get("encoding") != ENCODING:
                out.append(p)  # written before encryption was turned on
                continue
            kid = p.metadata.get(KEY_ID, b"").decode()
            aead = self.keys.get(kid)
            if aead is None:
                raise ValueError(f"payload encrypted with unknown key {kid!r}: set NODAL_ENCRYPTION_PREVIOUS_KEYS")
            out.append(Payload.FromString(aead.decrypt(p.data[:12], p.data[12:], None)))
        return out


def codec_from(settings) -> EncryptionCodec | None:
    if not settings.encryption_key:
        return None
    previous = [k for k in settings.encryption_previous_keys.split(",") if k.strip()]
    return EncryptionCodec(settings.encryption_key, [k.strip() for k in previous])


def data_converter(settings, engine=None) -> DataConverter:
    """Pydantic payloads, encrypted under NODAL_ENCRYPTION_KEY when set; with a database ``engine``, payloads
    too large for a history are kept in PostgreSQL (nodal/payloads.py) and the history holds a reference."""
    from temporalio.contrib.pydantic import pydantic_data_converter

    from nodal.payloads import external_storage

    converter = dataclasses.replace(pydantic_data_converter, external_storage=external_storage(engine))
    codec = codec_from(settings)
    # Failure messages and stack traces are encrypted too: an exception's text can quote what it failed on.
    return converter if codec is None else dataclasses.replace(
        converter, payload_codec=codec, failure_converter_class=DefaultFailureConverterWithEncodedAttributes)
