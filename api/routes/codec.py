"""The Temporal codec endpoint: the Temporal UI (and `temporal workflow show --codec-endpoint`) sends the
encrypted payloads of a history here and shows support staff what they hold (NODAL_ENCRYPTION_KEY)."""

from __future__ import annotations

import base64
import binascii
from typing import Literal, Optional

from cryptography.exceptions import InvalidTag
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, Field
from starlette.middleware.cors import CORSMiddleware
from temporalio.api.common.v1 import Payload

import api.answers as A
from api.auth import Principal, Role, _bearer, principal

router = APIRouter(prefix="/codec", tags=["operations"])


class CodecPayload(BaseModel):
    metadata: dict[str, str] = Field(default_factory=dict, description="values base64")
    data: str = Field(default="", description="base64")


class CodecPayloads(BaseModel):
    payloads: list[CodecPayload] = Field(max_length=10_000)


async def codec_reader(request: Request,
                       creds: Optional[HTTPAuthorizationCredentials] = Depends(_bearer)) -> Optional[Principal]:
    """Support or admin, unless NODAL_CODEC_REQUIRES_KEY is off (a UI on a private network that sends none)."""
    if not request.app.state.settings.codec_requires_key:
        return None
    p = await principal(request, creds)
    if p.role not in (Role.admin, Role.support):
        raise HTTPException(403, f"role {p.role.value} may not read workflow payloads")
    return p


def _b64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPException(422, f"{what} is not valid base64")


@router.post("/{operation}", summary="Temporal codec server: encode or decode payloads (NODAL_ENCRYPTION_KEY)",
             response_model=CodecPayloads, responses=A.errors(403, 404, 422))
async def run_codec(operation: Literal["encode", "decode"], body: CodecPayloads, request: Request,
                    _: Optional[Principal] = Depends(codec_reader)) -> CodecPayloads:
    codec = request.app.state.codec
    if codec is None:
        raise HTTPException(404, "payload encryption is off: set NODAL_ENCRYPTION_KEY")
    payloads = [Payload(metadata={k: _b64(v, f"payloads[{i}].metadata.{k}") for k, v in p.metadata.items()},
                        data=_b64(p.data, f"payloads[{i}].data")) for i, p in enumerate(body.payloads)]
    try:
        out = await (codec.encode if operation == "encode" else codec.decode)(payloads)
    except (InvalidTag, ValueError) as e:
        raise HTTPException(422, f"cannot decrypt: {e or 'the payload does not match its key'}")
    return CodecPayloads(payloads=[CodecPayload(
        metadata={k: base64.b64encode(v).decode() for k, v in p.metadata.items()},
        data=base64.b64encode(p.data).decode()) for p in out])


class CodecCors:
    """CORS for the codec paths only: the Temporal UI calls them from the browser, nothing else needs it."""

    def __init__(self, app, origins: list[str]):
        self.app = app
        self.cors = CORSMiddleware(app, allow_origins=origins, allow_methods=["POST"],
                                   allow_headers=["Authorization", "Content-Type", "X-Namespace"])

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith("/codec/"):
            return await self.cors(scope, receive, send)
        return await self.app(scope, receive, send)
