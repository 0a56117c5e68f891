"""The evidence bundle of `--snapshot DIR`: what a diagnosis saw, for the post-incident review.

    DIR/diagnose-<service>-<UTC time>/
      diagnosis.json              the whole result (verdict, checks, evidence)
      checks/<check>.json         each check's result
      raw/<check>/<name>          what each check read: logs, range-query data, pg_stat_activity,
                                  Redis INFO, tool invocations...
      manifest.json               sha256 and size of every other file

Every file passes through redaction first; the directory is 0700 and the files 0600 (logs and
queries can carry customer data).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from somactl import __version__
from somactl.checks.base import CheckResult
from somactl.core.errors import ConfigError
from somactl.core.redact import redact, redact_obj

MANIFEST = "manifest.json"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(name: str) -> str:
    cleaned = _SAFE.sub("_", name).strip("._") or "item"
    return cleaned[:120]


class Bundle:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: list[dict[str, Any]] = []

    def _write(self, rel: str, data: bytes) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        self.files.append(
            {"path": rel, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        )

    def json(self, rel: str, obj: Any) -> None:
        text = json.dumps(redact_obj(obj), indent=2, ensure_ascii=False, default=str) + "\n"
        self._write(rel, text.encode("utf-8"))

    def text(self, rel: str, text: str) -> None:
        self._write(rel, redact(text).encode("utf-8"))

    def add_results(self, results: Sequence[CheckResult], prefix: str = "") -> None:
        for r in results:
            name = safe_name(r.id.split(":", 1)[-1])
            self.json(f"{prefix}checks/{name}.json", {**r.to_json(), "evidence": r.evidence})
            for raw_name, content in r.raw.items():
                rel = f"{prefix}raw/{name}/{safe_name(raw_name)}"
                if isinstance(content, str):
                    self.text(rel, content)
                else:
                    self.json(rel, content)

    def finish(self, meta: Mapping[str, Any]) -> Path:
        manifest = {
            "somactl": 1,
            "version": __version__,
            **meta,
            "files": sorted(self.files, key=lambda f: f["path"]),
        }
        text = json.dumps(redact_obj(manifest), indent=2, ensure_ascii=False) + "\n"
        path = self.root / MANIFEST
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        return self.root


def new_bundle(parent: Path, service: str, now: float | None = None) -> Bundle:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now if now is not None else time.time()))
    root = Path(parent).expanduser() / f"diagnose-{safe_name(service)}-{stamp}"
    n = 1
    candidate = root
    while candidate.exists():
        n += 1
        candidate = root.with_name(f"{root.name}-{n}")
    try:
        candidate.mkdir(parents=True, mode=0o700)
    except OSError as exc:
        raise ConfigError(
            f"--snapshot: cannot create {candidate}: {exc.strerror or exc}",
            "choose a writable directory",
        ) from None
    return Bundle(candidate)


def verify(root: Path) -> list[str]:
    """Files whose sha256 no longer matches the manifest (empty: the bundle is intact)."""
    manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    bad = []
    for entry in manifest["files"]:
        data = (root / entry["path"]).read_bytes()
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            bad.append(entry["path"])
    return bad
