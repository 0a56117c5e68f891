"""The GitHub API stand-in: GitHub's rate-limit shapes, headers and errors."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from somactl.lab.services import ServicesHandle, start_services
from tests.lab_services.conftest import GITHUB_TOKEN

RESOURCES = {"core", "search", "graphql", "integration_manifest", "code_search"}
HEADERS = (
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-used",
    "x-ratelimit-reset",
    "x-ratelimit-resource",
)
AUTH = {"Authorization": f"token {GITHUB_TOKEN}"}


@pytest.fixture
def gh() -> Iterator[httpx.Client]:
    handle: ServicesHandle = start_services(kube_api=None, services=(), github_token=GITHUB_TOKEN)
    handle.tools.generator_enabled = False  # the adapter would spend the same core limit
    try:
        with httpx.Client(base_url=handle.url("github"), timeout=5.0) as c:
            yield c
    finally:
        handle.stop()


def test_rate_limit_shape_and_it_does_not_count(gh: httpx.Client) -> None:
    first = gh.get("/rate_limit", headers=AUTH)
    assert first.status_code == 200
    body = first.json()
    assert set(body) == {"resources", "rate"}
    assert set(body["resources"]) == RESOURCES
    for name, res in body["resources"].items():
        assert set(res) == {"limit", "remaining", "reset", "used", "resource"}
        assert res["resource"] == name
        assert res["remaining"] == res["limit"] - res["used"]
        assert res["reset"] > time.time()
    assert body["rate"] == body["resources"]["core"]
    assert body["resources"]["core"]["limit"] == 5000
    for h in HEADERS:
        assert h in first.headers
    second = gh.get("/rate_limit", headers=AUTH).json()
    assert second["resources"]["core"]["used"] == 0


def test_requests_count_against_core_with_headers(gh: httpx.Client) -> None:
    for i in range(1, 4):
        r = gh.get("/repos/somagent/gateway", headers={"Authorization": f"Bearer {GITHUB_TOKEN}"})
        assert r.status_code == 200
        assert r.json()["full_name"] == "somagent/gateway"
        assert r.headers["x-ratelimit-used"] == str(i)
        assert r.headers["x-ratelimit-remaining"] == str(5000 - i)
        assert r.headers["x-ratelimit-resource"] == "core"
    search = gh.get("/search/issues", params={"q": "bug"}, headers=AUTH)
    assert search.headers["x-ratelimit-resource"] == "search"
    assert search.headers["x-ratelimit-limit"] == "30"
    res = gh.get("/rate_limit", headers=AUTH).json()["resources"]
    assert (res["core"]["used"], res["search"]["used"]) == (3, 1)
    missing = gh.get("/repos/somagent", headers=AUTH)
    assert missing.status_code == 404 and missing.json()["message"] == "Not Found"
    assert missing.headers["x-ratelimit-used"] == "4"


def test_bad_credentials_is_401_and_anonymous_gets_60(gh: httpx.Client) -> None:
    bad = gh.get("/repos/a/b", headers={"Authorization": "token wrong-token"})
    assert bad.status_code == 401
    assert bad.json()["message"] == "Bad credentials"
    assert "documentation_url" in bad.json()
    assert gh.get("/repos/a/b", headers={"Authorization": "Basic abc"}).status_code == 401
    anon = gh.get("/repos/a/b")
    assert anon.status_code == 200
    assert anon.headers["x-ratelimit-limit"] == "60"
    assert gh.get("/rate_limit", headers=AUTH).json()["resources"]["core"]["used"] == 0


def test_exhausted_core_is_403_with_remaining_0(gh: httpx.Client) -> None:
    resp = gh.post("/_lab/exhaust", json={"resource": "core", "reset_in_minutes": 5})
    assert resp.status_code == 200
    r = gh.get("/repos/somagent/gateway", headers=AUTH)
    assert r.status_code == 403
    assert r.headers["x-ratelimit-remaining"] == "0"
    assert r.json()["message"].startswith("API rate limit exceeded")
    reset = int(r.headers["x-ratelimit-reset"])
    assert abs(reset - (time.time() + 300)) < 5
    # /rate_limit still answers, and shows it
    rl = gh.get("/rate_limit", headers=AUTH)
    assert rl.status_code == 200 and rl.json()["resources"]["core"]["remaining"] == 0
    assert rl.json()["resources"]["core"]["reset"] == reset
    anon = gh.get("/repos/a/b")
    assert anon.status_code == 403 and "Authenticated requests" in anon.json()["message"]
    gh.post("/_lab/restore").raise_for_status()
    assert gh.get("/repos/somagent/gateway", headers=AUTH).status_code == 200
    assert gh.post("/_lab/exhaust", json={"resource": "nope"}).status_code == 400


def test_secondary_limit_mode(gh: httpx.Client) -> None:
    gh.post(
        "/_lab/secondary", json={"status": 429, "retry_after": 30, "count": 1}
    ).raise_for_status()
    r = gh.get("/repos/a/b", headers=AUTH)
    assert r.status_code == 429
    assert r.headers["retry-after"] == "30"
    assert "secondary rate limit" in r.json()["message"]
    assert gh.get("/repos/a/b", headers=AUTH).status_code == 200  # count used up
    gh.post("/_lab/secondary", json={"status": 429, "retry_after": None}).raise_for_status()
    bare = gh.get("/repos/a/b", headers=AUTH)
    assert bare.status_code == 429 and "retry-after" not in bare.headers
    gh.post("/_lab/secondary", json={"enabled": False}).raise_for_status()
    assert gh.get("/repos/a/b", headers=AUTH).status_code == 200
    assert gh.post("/_lab/secondary", json={"status": 500}).status_code == 400
