"""What went wrong on the wire, in a few words, from any client library's exception.

A reset or refused connection fails at once; calling it "no response within 10s" sends the
on-call engineer after a slow network instead of a crashed or restarting server. The libraries
(psycopg, redis-py, requests/urllib3, the Kubernetes client) all keep the operating system's
words somewhere in their message or in the exception chain, so that is what is read here.
"""

from __future__ import annotations

REFUSED = "connection refused"
CLOSED = "connection closed by the server"

_CLOSED_WORDS = (
    "reset by peer",
    "connection reset",
    "closed the connection",
    "connection aborted",
    "remotedisconnected",
    "remote end closed",
    "connection closed",
    "broken pipe",
    "eof occurred",
    "unexpected eof",
)


def _texts(exc: BaseException) -> list[str]:
    seen: list[str] = []
    cur: BaseException | None = exc
    for _ in range(8):  # the chain of causes, bounded
        if cur is None:
            break
        seen.append(f"{type(cur).__name__} {cur}".lower())
        cur = cur.__cause__ or cur.__context__
    return seen


def network_problem(exc: BaseException, within: str) -> str:
    """`connection refused`, `connection closed by the server`, or `no response within <within>`
    (`within` as the caller shows its timeout, e.g. "3s")."""
    text = " ".join(_texts(exc))
    if "refused" in text:
        return REFUSED
    if any(w in text for w in _CLOSED_WORDS):
        return CLOSED
    return f"no response within {within}"
