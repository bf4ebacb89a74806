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


# What no schema can say: whether bytes are a .torrent, whether a magnet's tracker URLs are usable, and (for
# operators, whose requests must name the rights holder the schema leaves optional for rights holders) who
# owns a work. Schema-valid requests to these operations may get 400 (422 for a bulk item).
SEMANTIC = {"a": ["create_target", "bulk_targets"], "op": ["create_work"]}
POSITIVE = ["2xx", "3xx", "401", "403", "404", "409", "429"]
# Each role on what it may use (an ISP token on the rest is only 403s). The operator skips the two
# registration endpoints the rights holder's run covers: their boundary cases (a 20 MB base64 string,
# 10,000 bulk items) are most of a run's time.
SCOPE = {"a": [], "isp": ["--include-tag", "ledger"],
         "op": ["--exclude-path", "/api/v1/tokens/{id}",  # would revoke the token under test
                "--exclude-operation-id", "create_target", "--exclude-operation-id", "bulk_targets"]}


def _config(tmp_path: Path, who: str) -> Path:
    lines = ["[checks.positive_data_acceptance]", f"expected-statuses = {POSITIVE!r}"]
    if who in SEMANTIC:
        lines += ["[[operations]]", f"include-operation-id = {SEMANTIC[who]!r}",
                  "checks.positive_data_acceptance.expected-statuses = "
                  f"{[*POSITIVE, '400', '422']!r}"]
    path = tmp_path / "schemathesis.toml"
    path.write_text("\n".join(lines).replace("'", '"') + "\n")
    return path


@pytest.mark.parametrize("who", ["a", "op", "isp"])
async def test_schemathesis_with_all_checks_finds_nothing(api: Api, who: str, tmp_path: Path) -> None:
    """Every check: no 5xx, documented statuses, media types, headers and bodies; schema-valid requests
    accepted and schema-invalid ones refused; 401 without the token; 405 with an exact Allow."""
    await api.call("a", "POST", "/api/v1/targets", json={"work": "Film", "infohash": "ab" * 20})
    code, out = await run_process(
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(_config(tmp_path, who)), "run",
        f"{api.url}/api/v1/openapi.json", "--checks", "all",
        "--header", f"Authorization: Bearer {api.tokens[who]}", "--max-examples", "10",
        "--phases", "examples,coverage,fuzzing", "--workers", "1", "--seed", "1", *SCOPE[who],
        "--report", "junit", "--report-dir", str(tmp_path), timeout=600)
    assert code == 0, out[-8000:]
    [report] = [p.read_text() for p in tmp_path.glob("junit*.xml")]
    assert 'failures="0"' in report
    assert 'errors="0"' in report
