"""A GitHub REST API stand-in: rate limits with GitHub's real shapes, headers and errors.

* `GET /rate_limit` answers `{"resources": {core, search, graphql, integration_manifest,
  code_search: {limit, remaining, reset, used, resource}}, "rate": <core>}` and does not count.
* Every response carries `x-ratelimit-limit|remaining|used|reset|resource`.
* `Authorization: token X` / `Bearer X`: with a configured token anything else is a 401
  `{"message": "Bad credentials", ...}`; without a header the caller is anonymous (60/hour).
* Any other path counts against its resource (`/search/code` -> code_search, `/search/*` ->
  search, `/graphql` -> graphql, else core); once exhausted: 403, remaining 0 and GitHub's
  "API rate limit exceeded" message. A secondary-limit mode answers 429 (or 403) with or
  without `retry-after`.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from somactl.lab.services.httpbase import (
    HTTPError,
    Request,
    Response,
    Router,
    json_response,
)

AUTHENTICATED = "authenticated"
ANONYMOUS = "anonymous"
IDENTITIES = (AUTHENTICATED, ANONYMOUS)
# resource -> (limit when authenticated, limit when anonymous, window seconds)
RESOURCES: dict[str, tuple[int, int, int]] = {
    "core": (5000, 60, 3600),
    "search": (30, 10, 60),
    "graphql": (5000, 0, 3600),
    "integration_manifest": (5000, 5000, 3600),
    "code_search": (10, 0, 60),
}
DOCS = "https://docs.github.com/rest"
RATE_DOCS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
SECONDARY_DOCS = (
    "https://docs.github.com/free-pro-team@latest/rest/overview/"
    "rate-limits-for-the-rest-api#about-secondary-rate-limits"
)
API_VERSION = "2022-11-28"
USER_ID = 583231
LOGIN = "somagent-bot"


@dataclass
class Bucket:
    limit: int
    window: int
    used: int = 0
    reset: int = 0

    def roll(self, now: float) -> None:
        if now >= self.reset:
            self.used = 0
            self.reset = int(now) + self.window

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)

    def as_json(self, resource: str) -> dict[str, Any]:
        return {
            "limit": self.limit,
            "used": self.used,
            "remaining": self.remaining,
            "reset": self.reset,
            "resource": resource,
        }


@dataclass
class Secondary:
    status: int = 429
    retry_after: int | None = 60
    remaining: int | None = None  # None: until cleared


def resource_for(method: str, path: str) -> str | None:
    """Which rate-limit resource a request counts against (None: it does not count)."""
    if path.rstrip("/") == "/rate_limit":
        return None
    if path.startswith("/search/code"):
        return "code_search"
    if path.startswith("/search/"):
        return "search"
    if path.rstrip("/") == "/graphql":
        return "graphql"
    if path.startswith("/app-manifests/") and path.endswith("/conversions"):
        return "integration_manifest"
    return "core"


class GitHubSim:
    """The rate-limit state (thread-safe); also called in-process by the tools API's adapter."""

    def __init__(self, *, token: str | None = None, clock: Callable[[], float] = time.time) -> None:
        self.token = token
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, dict[str, Bucket]] = {}
        self.secondary: Secondary | None = None
        self.requests = 0
        self.restore()

    def now(self) -> float:
        return self._clock()

    def restore(self) -> None:
        """Every bucket back to a full, fresh window; secondary limits cleared."""
        now = self.now()
        with self._lock:
            self._buckets = {
                ident: {
                    res: Bucket(
                        limits[0] if ident == AUTHENTICATED else limits[1],
                        limits[2],
                        0,
                        int(now) + limits[2],
                    )
                    for res, limits in RESOURCES.items()
                }
                for ident in IDENTITIES
            }
            self.secondary = None

    def exhaust(
        self, resource: str = "core", reset_in: float = 3600.0, identity: str | None = None
    ) -> dict[str, Any]:
        if resource not in RESOURCES:
            raise HTTPError(400, f"unknown resource {resource!r}", resources=sorted(RESOURCES))
        now = self.now()
        with self._lock:
            for ident in (identity,) if identity else IDENTITIES:
                b = self._buckets[ident][resource]
                b.used = b.limit
                b.reset = int(now + reset_in)
            ident = identity or AUTHENTICATED
            return self._buckets[ident][resource].as_json(resource)

    def set_secondary(self, secondary: Secondary | None) -> None:
        with self._lock:
            self.secondary = secondary

    def snapshot(self, identity: str = AUTHENTICATED) -> dict[str, dict[str, Any]]:
        now = self.now()
        with self._lock:
            out = {}
            for res, b in self._buckets[identity].items():
                b.roll(now)
                out[res] = b.as_json(res)
            return out

    def bucket_json(self, identity: str, resource: str) -> dict[str, Any]:
        now = self.now()
        with self._lock:
            b = self._buckets[identity][resource]
            b.roll(now)
            return b.as_json(resource)

    def consume(self, identity: str, resource: str) -> tuple[str, dict[str, Any]]:
        """Count one request: ("ok" | "exhausted" | "secondary", bucket after the call).

        For "secondary" the bucket also carries `secondary_status` and `retry_after`.
        """
        now = self.now()
        with self._lock:
            self.requests += 1
            b = self._buckets[identity][resource]
            b.roll(now)
            sec = self.secondary
            if sec is not None:
                if sec.remaining is not None:
                    sec.remaining -= 1
                    if sec.remaining <= 0:
                        self.secondary = None
                return "secondary", {
                    **b.as_json(resource),
                    "secondary_status": sec.status,
                    "retry_after": sec.retry_after,
                }
            if b.remaining <= 0:
                return "exhausted", b.as_json(resource)
            b.used += 1
            return "ok", b.as_json(resource)

    def state_json(self) -> dict[str, Any]:
        sec = self.secondary
        return {
            "token_configured": self.token is not None,
            "requests": self.requests,
            "secondary": None
            if sec is None
            else {
                "status": sec.status,
                "retry_after": sec.retry_after,
                "remaining": sec.remaining,
            },
            "resources": {ident: self.snapshot(ident) for ident in IDENTITIES},
        }


def ratelimit_headers(bucket: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        ("x-ratelimit-limit", str(bucket["limit"])),
        ("x-ratelimit-remaining", str(bucket["remaining"])),
        ("x-ratelimit-used", str(bucket["used"])),
        ("x-ratelimit-reset", str(bucket["reset"])),
        ("x-ratelimit-resource", str(bucket["resource"])),
    ]


def _gh_error(status: int, message: str, docs: str, headers: list[tuple[str, str]]) -> Response:
    return json_response(
        status, {"message": message, "documentation_url": docs, "status": str(status)}, headers
    )


class GitHubApp:
    name = "github"

    def __init__(self, sim: GitHubSim) -> None:
        self.sim = sim
        api = Router()
        api.add("GET", "/rate_limit", self._rate_limit)
        api.add("GET", "/user", self._user)
        api.add("GET", r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)", self._repo)
        api.add("GET", r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/issues", self._list)
        api.add("GET", r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/pulls", self._list)
        api.add("GET", r"/search/(?P<kind>[a-z]+)", self._search)
        api.add("POST", "/graphql", self._graphql)
        self.api = api
        lab = Router()
        lab.add("GET", "/_lab/state", lambda req, m: json_response(200, self.sim.state_json()))
        lab.add("POST", "/_lab/exhaust", self._lab_exhaust)
        lab.add("POST", "/_lab/restore", self._lab_restore)
        lab.add("POST", "/_lab/reset", self._lab_restore)
        lab.add("POST", "/_lab/secondary", self._lab_secondary)
        self.lab = lab

    # -- dispatch ---------------------------------------------------------------------------

    def handle(self, req: Request) -> Response:
        if req.path.startswith("/_lab/"):
            return self.lab.dispatch(req)
        rid = uuid.uuid4().hex[:8].upper() + ":" + uuid.uuid4().hex[:8].upper()
        identity = self._identity(req)
        resource = resource_for(req.method, req.path)
        extra = [("x-github-request-id", rid), ("x-github-api-version-selected", API_VERSION)]
        if identity is None:
            headers = ratelimit_headers(self.sim.bucket_json(ANONYMOUS, "core")) + extra
            return _gh_error(401, "Bad credentials", DOCS, headers)
        if resource is None:
            bucket = self.sim.bucket_json(identity, "core")
            return self._with_headers(self.api.dispatch(req), bucket, extra)
        outcome, bucket = self.sim.consume(identity, resource)
        headers = ratelimit_headers(bucket) + extra
        if outcome == "secondary":
            status = int(bucket["secondary_status"])
            if bucket["retry_after"] is not None:
                headers.append(("retry-after", str(bucket["retry_after"])))
            return _gh_error(
                status,
                "You have exceeded a secondary rate limit. Please wait a few minutes before you "
                f"try again. If you reach out to GitHub Support for help, please include the "
                f"request ID {rid}.",
                SECONDARY_DOCS,
                headers,
            )
        if outcome == "exhausted":
            stamp = datetime.fromtimestamp(self.sim.now(), tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            if identity == ANONYMOUS:
                message = (
                    "API rate limit exceeded for 127.0.0.1. (But here's the good news: "
                    "Authenticated requests get a higher rate limit. Check out the documentation "
                    "for more details.)"
                )
            else:
                message = (
                    f"API rate limit exceeded for user ID {USER_ID}. If you reach out to GitHub "
                    f"Support for help, please include the request ID {rid} and timestamp "
                    f"{stamp}."
                )
            return _gh_error(403, message, RATE_DOCS, headers)
        return self._with_headers(self._route(req), bucket, extra)

    def _route(self, req: Request) -> Response:
        try:
            return self.api.dispatch(req)
        except HTTPError as exc:
            if exc.status == 404:
                return _gh_error(404, "Not Found", DOCS, [])
            return _gh_error(exc.status, exc.message, DOCS, [])

    @staticmethod
    def _with_headers(
        resp: Response, bucket: dict[str, Any], extra: list[tuple[str, str]]
    ) -> Response:
        resp.headers = ratelimit_headers(bucket) + extra + resp.headers
        return resp

    def _identity(self, req: Request) -> str | None:
        """AUTHENTICATED / ANONYMOUS, or None for bad credentials."""
        header = req.header("Authorization")
        if header is None:
            return ANONYMOUS
        scheme, _, value = header.strip().partition(" ")
        value = value.strip()
        if scheme.lower() not in ("token", "bearer") or not value:
            return None
        if self.sim.token is not None and value != self.sim.token:
            return None
        return AUTHENTICATED

    # -- API --------------------------------------------------------------------------------

    def _rate_limit(self, req: Request, m: Any) -> Response:
        identity = self._identity(req) or ANONYMOUS
        resources = self.sim.snapshot(identity)
        if identity == ANONYMOUS:
            resources = {k: v for k, v in resources.items() if v["limit"] > 0}
        return json_response(200, {"resources": resources, "rate": dict(resources["core"])})

    def _user(self, req: Request, m: Any) -> Response:
        if self._identity(req) != AUTHENTICATED:
            return _gh_error(401, "Requires authentication", DOCS, [])
        return json_response(
            200,
            {
                "login": LOGIN,
                "id": USER_ID,
                "type": "User",
                "html_url": f"https://github.com/{LOGIN}",
            },
        )

    def _repo(self, req: Request, m: Any) -> Response:
        owner, repo = m.group("owner"), m.group("repo")
        return json_response(
            200,
            {
                "id": 1296269,
                "name": repo,
                "full_name": f"{owner}/{repo}",
                "owner": {"login": owner, "id": 1, "type": "Organization"},
                "private": False,
                "html_url": f"https://github.com/{owner}/{repo}",
                "default_branch": "main",
                "open_issues_count": 0,
            },
        )

    def _list(self, req: Request, m: Any) -> Response:
        return json_response(200, [])

    def _search(self, req: Request, m: Any) -> Response:
        return json_response(200, {"total_count": 0, "incomplete_results": False, "items": []})

    def _graphql(self, req: Request, m: Any) -> Response:
        return json_response(200, {"data": {"viewer": {"login": LOGIN}}})

    # -- lab control ------------------------------------------------------------------------

    def _lab_exhaust(self, req: Request, m: Any) -> Response:
        body = req.json()
        resource = body.get("resource", "core")
        minutes = body.get("reset_in_minutes", 60)
        identity = body.get("identity")
        if not isinstance(minutes, int | float) or isinstance(minutes, bool) or minutes < 0:
            raise HTTPError(400, "reset_in_minutes must be a number >= 0")
        if identity is not None and identity not in IDENTITIES:
            raise HTTPError(400, f"identity must be one of {', '.join(IDENTITIES)} or null")
        bucket = self.sim.exhaust(str(resource), float(minutes) * 60, identity)
        return json_response(200, {"exhausted": bucket})

    def _lab_restore(self, req: Request, m: Any) -> Response:
        self.sim.restore()
        return json_response(200, self.sim.state_json())

    def _lab_secondary(self, req: Request, m: Any) -> Response:
        body = req.json()
        if body.get("enabled", True) is False:
            self.sim.set_secondary(None)
            return json_response(200, {"secondary": None})
        status = body.get("status", 429)
        retry_after = body.get("retry_after", 60)
        count = body.get("count")
        if status not in (403, 429):
            raise HTTPError(400, "status must be 403 or 429")
        if retry_after is not None and (
            not isinstance(retry_after, int) or isinstance(retry_after, bool) or retry_after < 0
        ):
            raise HTTPError(400, "retry_after must be an integer >= 0 or null")
        if count is not None and (
            not isinstance(count, int) or isinstance(count, bool) or count < 1
        ):
            raise HTTPError(400, "count must be an integer >= 1 or null")
        self.sim.set_secondary(Secondary(int(status), retry_after, count))
        return json_response(
            200, {"secondary": {"status": status, "retry_after": retry_after, "remaining": count}}
        )
