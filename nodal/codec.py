"""Payload encryption for Temporal (NODAL_ENCRYPTION_KEY): histories hold ciphertext, not customers' data.

Every payload a client or worker sends to Temporal (workflow inputs, activity arguments and results,
signals, Updates, queries, memos) is sealed with AES-256-GCM under a key derived from the configured
secret (a base64 32-byte key, or a passphrase stretched with scrypt). The key id travels in the payload's
metadata, so keys can be rotated: the new key encrypts, NODAL_ENCRYPTION_PREVIOUS_KEYS still decrypt what
was written before (also under the former SHA-256 derivation). With a key set, a payload that is not
encrypted is refused, unless NODAL_ENCRYPTION_ACCEPT_PLAINTEXT is on while older orders finish. Search attributes are not
payloads of this kind and stay readable (they hold ids and statuses, no personal data).
"""

from __future__ import annotations

import base64
import binascii
import copy
import dataclasses
import functools
import hashlib
import hmac
import os
from typing import Iterable, Optional, Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    DataConverter, DefaultFailureConverterWithEncodedAttributes, PayloadCodec, SerializationContext,
    WithSerializationContext,
)

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
BOUND_TO = "encryption-workflow-id"  # the workflow a payload is sealed for (associated data)


def _raw_key(secret: str) -> Optional[bytes]:
    """A random 32-byte key given in base64 (``python -c 'import secrets, base64;
    print(base64.b64encode(secrets.token_bytes(32)).decode())'``), used as it is."""
    try:
        raw = base64.b64decode(secret.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 32 else None


@functools.lru_cache(maxsize=16)
def derive(secret: str) -> tuple[str, bytes]:
    """The 256-bit key for the configured secret, and the id it is known by. A base64 32-byte key is used as
    it is; anything else is a passphrase stretched with scrypt (each guess costs 32 MB and tens of ms). The
    id is a keyed hash: it says which key, and gives no cheap test of a guessed passphrase."""
    key = _raw_key(secret) or hashlib.scrypt(secret.encode(), salt=b"nodal-payload-key", n=2**15, r=8, p=1,
                                              maxmem=64 * 2**20, dklen=32)
    return hmac.new(key, b"nodal-payload-key-id", hashlib.sha256).hexdigest()[:16], key


def derive_v1(secret: str) -> tuple[str, bytes]:
    """How keys were derived before (one SHA-256 of the passphrase): kept only to read what was written then."""
    key = hashlib.sha256(b"nodal-payload-key:" + secret.encode()).digest()
    return hashlib.sha256(key).hexdigest()[:16], key


class PlaintextRefused(ValueError):
    """A payload not encrypted while a key is set: never decoded (it may be someone's forgery)."""


class EncryptionCodec(PayloadCodec, WithSerializationContext):
    """With a serialization context (the SDK gives one per workflow and activity), each payload is bound to its
    workflow: the workflow id is associated data of the seal and travels in the metadata, and a worker refuses
    a payload bound to another workflow (one copied between histories). Without one (the codec endpoint the
    Temporal UI calls) the metadata's binding is used to open it."""

    def __init__(self, secret: str, previous: Iterable[str] = (), accept_plaintext: bool = False,
                 workflow_id: Optional[str] = None):
        self.key_id, key = derive(secret)
        self.keys = {self.key_id: AESGCM(key)}
        self.accept_plaintext, self.workflow_id = accept_plaintext, workflow_id
        for old in [secret, *previous]:
            for kid, k in (derive(old), derive_v1(old)):
                self.keys.setdefault(kid, AESGCM(k))

    def with_context(self, context: SerializationContext) -> "EncryptionCodec":
        workflow_id = getattr(context, "workflow_id", None)
        if workflow_id == self.workflow_id:
            return self
        bound = copy.copy(self)
        bound.workflow_id = workflow_id
        return bound

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        wf = self.workflow_id.encode() if self.workflow_id else None
        for p in payloads:
            nonce = os.urandom(12)
            metadata = {"encoding": ENCODING, KEY_ID: self.key_id.encode(), **({BOUND_TO: wf} if wf else {})}
            out.append(Payload(metadata=metadata,
                               data=nonce + self.keys[self.key_id].encrypt(nonce, p.SerializeToString(), wf)))
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for p in payloads:
            if p.metadata.get("encoding") != ENCODING:
                if not self.accept_plaintext:
                    raise PlaintextRefused(
                        "a payload that is not encrypted while NODAL_ENCRYPTION_KEY is set is refused (to read"
                        " histories written before encryption, set NODAL_ENCRYPTION_ACCEPT_PLAINTEXT=true until"
                        " those orders are closed)")
                out.append(p)  # written before encryption was turned on
                continue
            kid = p.metadata.get(KEY_ID, b"").decode()
            aead = self.keys.get(kid)
            if aead is None:
                raise ValueError(f"payload encrypted with unknown key {kid!r}: set NODAL_ENCRYPTION_PREVIOUS_KEYS")
            wf = p.metadata.get(BOUND_TO)  # None: sealed before payloads were bound, or with no context
            if wf is not None and self.workflow_id is not None and wf.decode() != self.workflow_id:
                raise ValueError(f"payload bound to workflow {wf.decode()!r} read in {self.workflow_id!r}: refused")
            out.append(Payload.FromString(aead.decrypt(p.data[:12], p.data[12:], wf)))
        return out


def codec_from(settings) -> EncryptionCodec | None:
    if not settings.encryption_key:
        return None
    previous = [k for k in settings.encryption_previous_keys.split(",") if k.strip()]
    return EncryptionCodec(settings.encryption_key, [k.strip() for k in previous],
                           accept_plaintext=settings.encryption_accept_plaintext)


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
