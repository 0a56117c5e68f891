"""Redaction: secrets never reach output, logs, audit records or error text.

Two mechanisms: values registered at run time (passwords read from env/files, tokens, webhook
URLs) are replaced wherever they appear, and known secret shapes (URL passwords, `password=` in
DSNs, bearer tokens, Slack webhook paths) are masked even when nobody registered them.
"""

from __future__ import annotations

import re
import threading
from typing import Any

MASK = "****"

_lock = threading.Lock()
_secrets: set[str] = set()

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # scheme://user:password@host  -> scheme://user:****@host
    (re.compile(r"(?P<pre>[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)[^@\s/]+(?=@)"), rf"\g<pre>{MASK}"),
    # libpq keyword DSNs: password=... / sslpassword=...
    (re.compile(r"(?P<pre>\b(?:ssl)?password\s*=\s*)('[^']*'|\S+)", re.I), rf"\g<pre>{MASK}"),
    # Authorization headers and tokens
    (
        re.compile(r"(?P<pre>\b(?:Bearer|token|OAuth)\s+)[A-Za-z0-9._~+/=-]{8,}", re.I),
        rf"\g<pre>{MASK}",
    ),
    # Slack incoming webhook paths are the secret themselves
    (re.compile(r"(?P<pre>hooks\.slack\.com/services/)[A-Za-z0-9/_-]+"), rf"\g<pre>{MASK}"),
    # GitHub tokens by prefix
    (re.compile(r"\b(?:ghp|gho|ghu|ghs|ghr|github_pat)_[A-Za-z0-9_]{10,}"), MASK),
    # query-string secrets
    (
        re.compile(
            r"(?P<pre>[?&](?:token|access_token|api_key|apikey|key|routing_key|password)=)"
            r"[^&\s]+",
            re.I,
        ),
        rf"\g<pre>{MASK}",
    ),
]

MIN_SECRET_LEN = 4


def register_secret(value: str | None) -> None:
    """Remember a secret value so that `redact` masks it wherever it appears."""
    if value and len(value) >= MIN_SECRET_LEN:
        with _lock:
            _secrets.add(value)


def registered_secret_count() -> int:
    with _lock:
        return len(_secrets)


def redact(text: str) -> str:
    """Mask registered secrets and known secret shapes in `text`."""
    if not text:
        return text
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


def redact_obj(obj: Any) -> Any:
    """Redact every string inside a JSON-like structure (for envelopes and audit records)."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {k: redact_obj(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_obj(v) for v in obj]
    return obj
