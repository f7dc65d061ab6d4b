"""docs/API.md is the API's own: regenerated from the OpenAPI the app serves, it must be what is checked in."""

from pathlib import Path

from api.app import create_app
from launcher.apidoc import render
from nodal.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_the_checked_in_api_reference_is_the_openapis():
    current = render(create_app(Settings(database_url="postgresql+psycopg://unused@/unused")).openapi())
    kept = (ROOT / "docs" / "API.md").read_text()
    assert kept == current, "docs/API.md is out of date: run `nodal api-reference > docs/API.md`"


def test_every_answer_and_refusal_is_documented():
    openapi = create_app(Settings(database_url="postgresql+psycopg://unused@/unused")).openapi()
    for path, ops in openapi["paths"].items():
        for method, op in ops.items():
            answers = op["responses"]
            ok = [a for code, a in answers.items() if code.startswith("2")]
            assert ok and all(a.get("content") for a in ok), f"{method} {path} documents no answer"
            assert "429" in answers, f"{method} {path}: the rate limit's 429 is not documented"
            for code, a in answers.items():
                if code.startswith("4") or code == "503" and path != "/healthz":
                    schema = a["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Problem"}, (method, path, code, schema)
