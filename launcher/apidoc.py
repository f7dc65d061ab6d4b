"""The API reference in markdown (docs/API.md), written from the OpenAPI the app serves: `nodal api-reference`.
A test regenerates it and compares, so the checked-in reference is always the API's own."""

from __future__ import annotations

import json
from typing import Any

HEADER = """# Nodal API reference

Generated from the OpenAPI (`nodal api-reference > docs/API.md`; `/openapi.json` and `/docs` on a running API).
Keys are sent as `Authorization: Bearer <key>`; who may call what is in README ("What each role sees").
Times are ISO 8601, money a decimal string. Every refusal is a `Problem`: `{"detail": "the reason"}`.
"""


def _type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return f"[{(name := schema['$ref'].rsplit('/', 1)[-1])}](#{name.lower()})"
    for union in ("anyOf", "oneOf"):
        if union in schema:
            kinds = [_type(s) for s in schema[union]]
            return " or ".join(k for k in kinds if k != "null") + (" or null" if "null" in kinds else "")
    kind = schema.get("type", "any")
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{schema['const']}`"
    if kind == "array":
        return f"list of {_type(schema.get('items', {}))}"
    if kind == "object" and "additionalProperties" in schema and isinstance(schema["additionalProperties"], dict):
        return f"map of {_type(schema['additionalProperties'])}"
    return kind + (f" ({schema['format']})" if "format" in schema else "")


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _operation(method: str, path: str, op: dict[str, Any]) -> list[str]:
    out = [f"### {method.upper()} `{path}`", "", _cell(op.get("summary", ""))]
    if op.get("description"):
        out += ["", _cell(op["description"])]
    params = op.get("parameters", [])
    if params:
        out += ["", "| parameter | in | type | required |", "| --- | --- | --- | --- |"]
        out += [f"| `{p['name']}` | {p['in']} | {_type(p.get('schema', {}))} | {'yes' if p.get('required') else 'no'} |"
                for p in params]
    body = op.get("requestBody")
    if body:
        schema = body.get("content", {}).get("application/json", {}).get("schema", {})
        out += ["", f"Body: {_type(schema)}" + (f". {_cell(body['description'])}" if body.get("description") else "")]
    out += ["", "| status | answer | when |", "| --- | --- | --- |"]
    for status, answer in sorted(op.get("responses", {}).items()):
        content = answer.get("content", {})
        schema = (content.get("application/json") or content.get("text/plain") or {}).get("schema", {})
        out.append(f"| {status} | {_type(schema) if schema else '-'} | {_cell(answer.get('description', ''))} |")
    return out + [""]


def _schema(name: str, schema: dict[str, Any]) -> list[str]:
    out = [f"### {name}", ""]
    if schema.get("description"):
        out += [_cell(schema["description"]), ""]
    props = schema.get("properties")
    if not props:
        return out + [f"{_type(schema)}", ""]
    required = set(schema.get("required", []))
    out += ["| field | type | required | meaning |", "| --- | --- | --- | --- |"]
    out += [f"| `{field}` | {_type(s)} | {'yes' if field in required else 'no'} | {_cell(s.get('description', ''))} |"
            for field, s in props.items()]
    return out + [""]


def render(openapi: dict[str, Any]) -> str:
    by_tag: dict[str, list[list[str]]] = {}
    for path, ops in openapi["paths"].items():
        for method, op in ops.items():
            by_tag.setdefault((op.get("tags") or ["operations"])[0], []).append(_operation(method, path, op))
    out = [HEADER]
    for tag, operations in by_tag.items():
        out += [f"## {tag.capitalize()}", ""]
        for lines in operations:
            out += lines
    hooks = openapi.get("webhooks", {})
    if hooks:
        out += ["## Outbound events (webhooks)", "",
                "What a subscription's endpoint receives (`PUT /webhooks/{name}`): a signed POST per event.", ""]
        schemas = openapi.get("components", {}).get("schemas", {})
        for event_type, ops in hooks.items():
            op = ops["post"]
            schema = op["requestBody"]["content"]["application/json"]["schema"]
            example = schemas.get(schema.get("$ref", "").rsplit("/", 1)[-1], {}).get("examples", [None])[0]
            out += [f"### `{event_type}`", "", _cell(op.get("description", "").split("\n\n")[0]), "",
                    f"Body: {_type(schema)}", ""]
            if example is not None:
                out += ["```json", json.dumps(example, indent=None), "```", ""]
    out += ["## Schemas", ""]
    for name, schema in sorted(openapi.get("components", {}).get("schemas", {}).items()):
        out += _schema(name, schema)
    return "\n".join(out).rstrip() + "\n"
