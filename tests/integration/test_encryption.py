"""NODAL_ENCRYPTION_KEY: histories hold no plaintext personal data; the codec endpoint shows it to staff."""

from __future__ import annotations

import asyncio
import base64
import json

import httpx
import pytest
from temporalio.client import Client

from api.app import create_app
from nodal.codec import EncryptionCodec, data_converter
from launcher.worker import build_worker
from tests.integration.conftest import Api, make_network, settings_for
from tests.integration.flow import order_status, place, release, walk, fulfillment

pytestmark = pytest.mark.integration
QUEUE = "nodal-encrypted"
EMAIL = "jane.doe@example.com"  # what order_body puts in


async def test_histories_are_encrypted_and_staff_can_read_them(temporal_env, db, pg_url):
    settings = settings_for(pg_url, task_queue=QUEUE, encryption_key="correct horse battery staple")
    client = await Client.connect(temporal_env.client.service_client.config.target_host,
                                  data_converter=data_converter(settings))
    worker = build_worker(client, settings, db)
    running = asyncio.create_task(worker.run())
    app = create_app(settings, db=db, temporal=client)
    app.state.db, app.state.temporal = db, client
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://nodal", timeout=60) as c:
            api = Api(c)
            net = await make_network(api)
            oid = (await place(api, net, [("SKU1", 1)]))["order_id"]
            await release(api, temporal_env, oid, settings)
            # Failures are encrypted too, and the API still reads their reason through the codec.
            line = {"line_id": "L1", "sku": f"{net.prefix}-SKU1", "qty": 2, "unit_price": "10.00",
                    "delivery": {"method": "ship_standard", "address": {"postal_code": net.postal_code}}}
            r = await api.call("PATCH", f"/orders/{oid}", key=net.client_key, json={"lines": [line]})
            assert r.status_code == 409 and "remorse window" in r.json()["detail"], r.text
            f = await fulfillment(api, oid, net.node("DC-N"))
            await walk(api, f, await api.key("partner", node_id=net.node("DC-N")))
            await order_status(api, oid, "delivered")

            # What Temporal stores (and the UI shows without the codec) is ciphertext.
            raw = await temporal_env.client.get_workflow_handle(oid).fetch_history()
            stored = raw.to_json()
            assert EMAIL not in stored and "1 Main St" not in stored and net.postal_code not in stored
            started = raw.events[0].workflow_execution_started_event_attributes.input.payloads[0]
            assert started.metadata["encoding"] == b"binary/encrypted"
            assert started.metadata["encryption-workflow-id"] == oid.encode()  # sealed for this order

            # The codec endpoint (as the Temporal UI calls it) gives support staff the plaintext back.
            body = {"payloads": [{"metadata": {k: base64.b64encode(v).decode() for k, v in started.metadata.items()},
                                  "data": base64.b64encode(started.data).decode()}]}
            support = await api.key("support")
            decoded = await api.ok("POST", "/codec/decode", key=support, json=body, headers={"X-Namespace": "default"})
            plain = json.loads(base64.b64decode(decoded["payloads"][0]["data"]))
            assert plain["customer"]["email"] == EMAIL and plain["order_id"] == oid
            assert base64.b64decode(decoded["payloads"][0]["metadata"]["encoding"]) == b"json/plain"
            # Encode is the inverse (the UI uses it to send signals and Updates).
            again = await api.ok("POST", "/codec/encode", key=support, json=decoded)
            assert (await api.ok("POST", "/codec/decode", key=support, json=again)) == decoded

            # Only staff: customers and partners may not read other people's payloads.
            assert (await api.call("POST", "/codec/decode", key=net.client_key, json=body)).status_code == 403
            assert (await api.call("POST", "/codec/decode", key=None, json=body)).status_code == 401
            tampered = {"payloads": [{**body["payloads"][0], "data": base64.b64encode(started.data[:-1] + b"x").decode()}]}
            r = await api.call("POST", "/codec/decode", key=support, json=tampered)
            assert r.status_code == 422 and "cannot decrypt" in r.text
            r = await api.call("POST", "/codec/decode", key=support, json={"payloads": [{"data": "%%%"}]})
            assert r.status_code == 422 and "base64" in r.text
            # The browser's preflight from the Temporal UI is allowed; other origins are not.
            pre = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}
            ok = await c.options("/codec/decode", headers={"Origin": "http://localhost:8233", **pre})
            assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "http://localhost:8233"
            bad = await c.options("/codec/decode", headers={"Origin": "http://evil.example", **pre})
            assert "access-control-allow-origin" not in bad.headers
    finally:
        await worker.shutdown()
        await asyncio.gather(running, return_exceptions=True)


async def test_codec_is_off_without_a_key(api: Api):
    r = await api.call("POST", "/codec/decode", json={"payloads": []})
    assert r.status_code == 404 and "NODAL_ENCRYPTION_KEY" in r.text


async def test_rotated_keys_still_decrypt_and_unknown_keys_say_so():
    from temporalio.api.common.v1 import Payload

    old = EncryptionCodec("old secret")
    sealed = await old.encode([Payload(metadata={"encoding": b"json/plain"}, data=b'{"email": "a@b.c"}')])
    assert b"a@b.c" not in sealed[0].data
    rotated = EncryptionCodec("new secret", previous=["old secret"])
    assert (await rotated.decode(sealed))[0].data == b'{"email": "a@b.c"}'
    assert (await rotated.encode(sealed))[0].metadata["encryption-key-id"] != sealed[0].metadata["encryption-key-id"]
    with pytest.raises(ValueError, match="unknown key"):
        await EncryptionCodec("new secret").decode(sealed)
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b"1")
    with pytest.raises(ValueError, match="not encrypted"):  # with a key set, plaintext may be a forgery
        await rotated.decode([plain])
    transition = EncryptionCodec("new secret", previous=["old secret"], accept_plaintext=True)
    assert (await transition.decode([plain]))[0] == plain  # written before encryption was on


async def test_failure_messages_are_encrypted_and_read_back():
    from temporalio.api.failure.v1 import Failure
    from temporalio.exceptions import ApplicationError

    converter = data_converter(settings_for("postgresql://unused", encryption_key="s3cret"))
    reason = "carrier refused the address 12 Probe Street"
    try:
        raise ApplicationError(reason, type="AddressRefused")
    except ApplicationError as e:
        error = e
    failure = Failure()
    await converter.encode_failure(error, failure)
    stored = failure.SerializeToString()
    assert reason.encode() not in stored and b"Probe Street" not in stored and b"AddressRefused" in stored
    back = await converter.decode_failure(failure)
    assert isinstance(back, ApplicationError) and back.message == reason and back.type == "AddressRefused"


async def test_a_private_network_ui_may_decode_without_a_key(db, pg_url):
    from temporalio.api.common.v1 import Payload

    settings = settings_for(pg_url, encryption_key="s3cret", codec_requires_key=False)
    app = create_app(settings, db=db)
    app.state.db = db
    sealed = (await EncryptionCodec("s3cret").encode([Payload(metadata={"encoding": b"json/plain"}, data=b"42")]))[0]
    body = {"payloads": [{"metadata": {k: base64.b64encode(v).decode() for k, v in sealed.metadata.items()},
                          "data": base64.b64encode(sealed.data).decode()}]}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://nodal") as c:
        r = await c.post("/codec/decode", json=body)
    assert r.status_code == 200 and base64.b64decode(r.json()["payloads"][0]["data"]) == b"42"
