"""The OpenAPI document covers every route the server serves, and the server keeps to it (schemathesis)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from tests.api.conftest import Api
from tests.helpers import run_process
from tracker_watch.api.app import create_app
from tracker_watch.config import settings_from_mapping

CONSOLE = re.compile(r"^/$|^/console(/|$)")


def test_every_route_is_documented_and_nothing_else() -> None:
    app = create_app(None, settings_from_mapping({}))
    served = {(r.method.lower(), re.sub(r"\{(\w+)[^}]*\}", r"{\1}", r.resource.canonical))
              for r in app.router.routes() if r.method != "HEAD" and r.resource is not None
              and not CONSOLE.match(r.resource.canonical)}  # the web console's HTML pages are not the API
    doc = app[__import__("tracker_watch.api.keys", fromlist=["OPENAPI"]).OPENAPI]
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert served == documented
    assert doc["openapi"] == "3.1.0"
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["responses"], (method, path)
            assert op["operationId"]


async def test_document_is_served(api: Api) -> None:
    async with api.http.get("/api/v1/openapi.json") as r:
        assert r.status == 200
        doc = await r.json()
    assert "/api/v1/targets/bulk" in doc["paths"]
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


@pytest.mark.parametrize("who", ["a", "op", "isp"])
async def test_schemathesis_finds_no_server_error_and_no_schema_violation(api: Api, who: str,
                                                                         tmp_path: Path) -> None:
    await api.call("a", "POST", "/api/v1/targets", json={"work": "Film", "infohash": "ab" * 20})
    code, out = await run_process(
        sys.executable, "-m", "schemathesis.cli", "run", f"{api.url}/api/v1/openapi.json",
        "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                    "response_schema_conformance",
        "--header", f"Authorization: Bearer {api.tokens[who]}", "--max-examples", "12",
        "--phases", "examples,coverage,fuzzing", "--workers", "1", "--seed", "1",
        "--exclude-path", "/api/v1/tokens/{id}",  # would revoke the token under test mid-run
        "--report", "junit", "--report-dir", str(tmp_path), timeout=300)
    assert code == 0, out[-6000:]
    [report] = [p.read_text() for p in tmp_path.glob("junit*.xml")]
    assert 'failures="0"' in report
    assert 'errors="0"' in report
