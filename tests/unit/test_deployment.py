"""docker-compose.yml cannot run here (no Docker engine): check it against the code instead."""

from __future__ import annotations

import re
from pathlib import Path

import typer
import yaml

from launcher.cli import app
from launcher.dev import SEARCH_ATTRIBUTE_TYPES
from nodal.settings import Settings
from workflows.common import SEARCH_ATTRIBUTES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
NODAL_SERVICES = {name: s for name, s in SERVICES.items() if "build" in s}
CLI = typer.main.get_command(app)


def test_the_production_shape_is_complete():
    assert {"postgres", "temporal", "temporal-ui", "api", "worker", "migrate"} <= set(SERVICES)
    assert set(NODAL_SERVICES) == {"api", "worker", "migrate"}
    assert (ROOT / "Dockerfile").exists()


def test_every_nodal_command_exists_with_its_options():
    for name, service in NODAL_SERVICES.items():
        cmd = service["command"]
        assert cmd[0] == "nodal", name
        sub = CLI.commands.get(cmd[1])
        assert sub is not None, f"{name}: nodal has no command {cmd[1]!r}"
        known = {opt for p in sub.params for opt in getattr(p, "opts", [])}
        for token in cmd[2:]:
            if token.startswith("--"):
                assert token in known, f"{name}: `nodal {cmd[1]}` has no option {token}"


def test_every_environment_variable_is_a_setting():
    fields = {f"NODAL_{f.upper()}" for f in Settings.model_fields}
    for name, service in NODAL_SERVICES.items():
        env = service["environment"]
        assert {"NODAL_DATABASE_URL", "NODAL_TEMPORAL_ADDRESS", "NODAL_TASK_QUEUE"} <= set(env), name
        for key, value in env.items():
            assert key in fields, f"{name}: {key} is not a Nodal setting"
            if not str(value).startswith("${"):
                Settings.model_validate({key[len("NODAL_"):].lower(): value})  # parses as the code does


def test_services_agree_on_addresses_ports_and_queue():
    api, worker = NODAL_SERVICES["api"], NODAL_SERVICES["worker"]
    assert api["environment"]["NODAL_TASK_QUEUE"] == worker["environment"]["NODAL_TASK_QUEUE"]
    host, port = api["environment"]["NODAL_TEMPORAL_ADDRESS"].split(":")
    assert host in SERVICES and port == "7233"  # the frontend's port, on the internal network only
    db = re.match(r"postgresql://(\w+):(.+)@(\w+):(\d+)/(\w+)", api["environment"]["NODAL_DATABASE_URL"])
    pg = SERVICES[db.group(3)]["environment"]
    # The API and the workers reach Temporal and PostgreSQL: they share a network.
    for name in ("api", "worker", "migrate", "temporal-ui"):
        assert set(SERVICES[name]["networks"]) & set(SERVICES[host]["networks"]) & set(SERVICES[db.group(3)]["networks"]), name
    assert (pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], pg["POSTGRES_DB"]) == db.group(1, 2, 5)
    api_port = api["command"][api["command"].index("--port") + 1]
    assert f"{api_port}:{api_port}" in api["ports"]
    assert SERVICES["temporal-ui"]["environment"]["TEMPORAL_ADDRESS"] == api["environment"]["NODAL_TEMPORAL_ADDRESS"]


def test_search_attributes_registered_match_the_workflows():
    script = " ".join(SERVICES["temporal-setup"]["command"])
    registered = dict(re.findall(r"--name (\w+) --type (\w+)", script))
    assert registered == SEARCH_ATTRIBUTE_TYPES
    # The types the workflows upsert with are the types registered.
    sdk_types = {k.name: k.indexed_value_type.name.replace("_", "") for k in SEARCH_ATTRIBUTES}
    assert {n: t.upper() for n, t in registered.items()} == sdk_types


def test_dockerfile_copies_every_package():
    import tomllib

    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    top = {p.split(".")[0] for p in packages}
    copied = set(re.findall(r"^COPY (\w+) ", (ROOT / "Dockerfile").read_text(), re.M))
    assert top <= copied, f"Dockerfile misses {top - copied}"


def test_every_package_is_installed():
    """A subpackage missing from pyproject works in an editable checkout and breaks the image."""
    import tomllib

    packages = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    top = {p.split(".")[0] for p in packages}
    found = {".".join(init.parent.relative_to(ROOT).parts) for t in top for init in (ROOT / t).rglob("__init__.py")}
    assert found == packages, f"not listed: {sorted(found - packages)}; listed but absent: {sorted(packages - found)}"


def test_a_weak_admin_key_is_refused():
    from api.auth import admin_key_problem

    for weak in ("", "admin", "test-admin-key", "a" * 40, "abababababababababababababab"):
        assert admin_key_problem(weak), weak
    assert admin_key_problem("ndl_admin_" + "Xk3q9WmZ2rTn7VcLp4Jb8sYd") is None


def test_only_the_api_is_reachable_from_outside():
    """Temporal's frontend and UI bypass the API's roles (anyone who reaches them reads histories and signals,
    updates or terminates orders) and PostgreSQL holds everything: none of them is published beyond this host,
    and they share a network with no route out. Only the API listens on every interface."""
    published = {}
    for name, s in SERVICES.items():
        for p in s.get("ports", []):
            parts = str(p).split(":")
            published.setdefault(name, []).append(parts[0] if len(parts) == 3 else "0.0.0.0")
    assert set(published) <= {"api", "temporal-ui"}, published
    assert all(host == "127.0.0.1" for host in published.get("temporal-ui", [])), published
    internal = {n for n, spec in (COMPOSE.get("networks") or {}).items() if (spec or {}).get("internal")}
    assert internal, "no internal network"
    for name in ("postgres", "temporal", "temporal-setup", "migrate"):
        assert set(SERVICES[name].get("networks", [])) <= internal and SERVICES[name].get("networks"), name
    # No password written into the file: the operator sets them.
    text_ = (ROOT / "docker-compose.yml").read_text()
    assert "POSTGRES_PASSWORD: nodal" not in text_ and "nodal:nodal@" not in text_


def test_encryption_keys_are_random_or_stretched_and_their_ids_give_nothing_away():
    import base64
    import hashlib

    from nodal.codec import derive

    raw = bytes(range(32))
    kid, key = derive(base64.b64encode(raw).decode())
    assert key == raw  # a random 32-byte key, given in base64, is used as it is
    kid, key = derive("correct horse battery staple")
    assert key != hashlib.sha256(b"nodal-payload-key:correct horse battery staple").digest()  # stretched
    assert kid != hashlib.sha256(key).hexdigest()[:16]  # the id is not a plain hash of the key


async def test_with_a_key_set_a_plaintext_payload_is_refused_and_old_keys_still_read():
    import pytest
    from temporalio.api.common.v1 import Payload

    from nodal.codec import EncryptionCodec, PlaintextRefused, derive_v1

    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'{"order_id": "forged"}')
    with pytest.raises(PlaintextRefused):
        await EncryptionCodec("a passphrase").decode([plain])
    assert await EncryptionCodec("a passphrase", accept_plaintext=True).decode([plain]) == [plain]
    # What was sealed under the former derivation (one SHA-256) still opens, with the same secret.
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    kid, key = derive_v1("a passphrase")
    sealed = Payload(metadata={"encoding": b"binary/encrypted", "encryption-key-id": kid.encode()},
                     data=b"\0" * 12 + AESGCM(key).encrypt(b"\0" * 12, plain.SerializeToString(), None))
    assert await EncryptionCodec("a passphrase").decode([sealed]) == [plain]


async def test_a_payload_sealed_for_one_workflow_is_refused_in_another():
    import pytest
    from temporalio.api.common.v1 import Payload
    from temporalio.converter import WorkflowSerializationContext

    from nodal.codec import BOUND_TO, EncryptionCodec

    codec = EncryptionCodec("a passphrase")
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'{"email": "a@b.c"}')
    a = codec.with_context(WorkflowSerializationContext(namespace="default", workflow_id="ORD-A"))
    b = codec.with_context(WorkflowSerializationContext(namespace="default", workflow_id="ORD-B"))
    sealed = await a.encode([plain])
    assert sealed[0].metadata[BOUND_TO] == b"ORD-A"
    assert await a.decode(sealed) == [plain] and await codec.decode(sealed) == [plain]  # the UI's endpoint
    with pytest.raises(ValueError, match="bound to workflow"):
        await b.decode(sealed)  # copied into another order's history
    relabelled = Payload(metadata={**sealed[0].metadata, BOUND_TO: b"ORD-B"}, data=sealed[0].data)
    with pytest.raises(Exception):
        await b.decode([relabelled])  # the binding is sealed in: changing the label breaks the seal


def test_prometheus_scrapes_what_the_services_serve():
    """deploy/prometheus.yml: the API's port and each worker's metrics port as the compose file sets them."""
    scrape = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in scrape["scrape_configs"]}
    assert jobs["nodal-api"]["static_configs"][0]["targets"] == ["api:8000"]
    assert "8000:8000" in SERVICES["api"]["ports"]
    worker = jobs["nodal-worker"]["dns_sd_configs"][0]
    address = SERVICES["worker"]["environment"]["NODAL_WORKER_METRICS_ADDRESS"]
    assert worker["names"] == ["worker"] and str(worker["port"]) == address.rsplit(":", 1)[1]
