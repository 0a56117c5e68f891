"""`mitigate redis-flush`: FLUSHALL on a primary, after showing what it destroys.

The plan reads the instance's role (a replica is refused: its writes go to the primary), the
keys per database and its persistence (FLUSHALL also rewrites the RDB file when saving is on),
and pre-checks the permission with ACL DRYRUN when the user may run it (NOPERM -> exit 7 before
anything is asked). The run_id pins the instance: a restart or failover since the plan stops it.
"""

from __future__ import annotations

import contextlib
from typing import Any

from somactl.actions.base import Outcome, Plan, Verification
from somactl.clients.redis import RedisTarget, call, connect
from somactl.core.deadline import Deadline
from somactl.core.errors import PermissionDeniedError, PreconditionError


def _total(keyspace: dict[str, Any]) -> int:
    total = 0
    for value in keyspace.values():
        if isinstance(value, dict):
            total += int(value.get("keys", 0))
    return total


class RedisFlushAction:
    name = "redis-flush"

    def __init__(self, target: RedisTarget, deadline: Deadline, *, instance: str) -> None:
        self.target = target
        self.deadline = deadline
        self.instance = instance
        self._client: Any = None

    def set_deadline(self, deadline: Deadline) -> None:
        self.close()
        self.deadline = deadline

    def close(self) -> None:
        if self._client is not None:
            # closing a dead connection must not fail the action
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None

    def _call(self, *args: object) -> Any:
        if self._client is None:
            self._client = connect(self.target, self.deadline)
        return call(self._client, self.target, self.deadline, *args)

    def _info(self, section: str) -> dict[str, Any]:
        value = self._call("INFO", section)
        return dict(value) if isinstance(value, dict) else {}

    def plan(self) -> Plan:
        server = self._info("server")
        repl = self._info("replication")
        keyspace = self._info("keyspace")
        persistence = self._info("persistence")
        memory = self._info("memory")
        whoami: str | None
        try:
            whoami = str(self._call("ACL", "WHOAMI"))
        except PermissionDeniedError:
            whoami = None
        save: str | None
        try:
            got = self._call("CONFIG", "GET", "save")
            if isinstance(got, list):  # RESP2 answers a flat [name, value] list
                got = dict(zip(got[::2], got[1::2], strict=False))
            save = str(got.get("save", "")) if isinstance(got, dict) else None
        except PermissionDeniedError:
            save = None
        role = str(repl.get("role", "unknown"))
        keys = {db: int(v.get("keys", 0)) for db, v in keyspace.items() if isinstance(v, dict)}
        total = sum(keys.values())
        rdb_on = bool(save) if save is not None else None
        aof_on = bool(int(persistence.get("aof_enabled", 0) or 0))
        persist = {
            "rdb_save": save if save is not None else "unknown (CONFIG GET needs admin rights)",
            "rdb_enabled": rdb_on,
            "aof_enabled": aof_on,
            "rdb_last_save_time": persistence.get("rdb_last_save_time"),
            "rdb_changes_since_last_save": persistence.get("rdb_changes_since_last_save"),
        }
        plan = Plan(
            action=self.name,
            target=f"redis {self.instance}",
            summary=f"FLUSHALL on redis {self.instance}: delete all {total} keys in "
            f"{len(keys)} database{'s' if len(keys) != 1 else ''}",
            consent=f"delete every key of redis {self.instance} (FLUSHALL)",
            typed_name=self.instance,
            details={
                "instance": self.instance,
                "role": role,
                "user": whoami,
                "version": server.get("redis_version"),
                "keys": keys,
                "total_keys": total,
                "persistence": persist,
                "maxmemory": int(memory.get("maxmemory", 0) or 0),
                "maxmemory_policy": memory.get("maxmemory_policy"),
            },
            pins={"run_id": server.get("run_id"), "role": role},
        )
        plan.display = [
            f"role: {role}   version: {server.get('redis_version')}   user: {whoami or 'unknown'}",
            "keys: " + (", ".join(f"{db}={n}" for db, n in sorted(keys.items())) or "none (empty)"),
            f"persistence: RDB save {persist['rdb_save']!r}, AOF "
            f"{'on' if aof_on else 'off'}, last save {persist['rdb_last_save_time']}",
        ]
        if role in ("slave", "replica"):
            primary = f"{repl.get('master_host')}:{repl.get('master_port')}"
            plan.blocked = (
                f"target is a replica; writes go to primary {primary} "
                "(a replica rejects FLUSHALL, and flushing the primary flushes its replicas)"
            )
            plan.blocked_hint = "point redis.url at the primary if the cache must be flushed"
            return plan
        if whoami is not None:
            try:
                verdict = str(self._call("ACL", "DRYRUN", whoami, "FLUSHALL"))
            except PermissionDeniedError:
                plan.warnings.append(
                    "could not pre-check the permission (ACL DRYRUN needs admin rights); "
                    "a NOPERM answer to FLUSHALL will stop the action"
                )
            else:
                if verdict != "OK":
                    raise PermissionDeniedError(
                        f"redis ({self.target.describe()}): NOPERM user {whoami} may not run "
                        f"flushall: {verdict}",
                        "FLUSHALL is in the @dangerous ACL category; nothing was deleted",
                    )
        if total == 0:
            plan.noop = f"redis {self.instance} has no keys"
            return plan
        if rdb_on or aof_on:
            plan.warnings.append(
                "persistence is on: FLUSHALL also clears the dataset on disk (it rewrites the "
                "RDB file / the AOF), so a restart will not bring the keys back"
            )
        plan.warnings.append(
            f"all {total} keys are deleted; clients rebuild the cache from scratch"
        )
        policy = memory.get("maxmemory_policy")
        if policy == "noeviction" and int(memory.get("maxmemory", 0) or 0) > 0:
            plan.warnings.append(
                "maxmemory-policy is noeviction: once the cache is full again, writes fail "
                "again (OOM); a flush only buys time. For a cache, an eviction policy stops it "
                "recurring: CONFIG SET maxmemory-policy allkeys-lru (and in the Redis config)"
            )
        plan.steps = [
            f"check the instance is still the one planned (run_id {server.get('run_id')}) and a "
            "primary",
            "FLUSHALL (synchronous)",
        ]
        return plan

    def apply(self, plan: Plan) -> Outcome:
        server = self._info("server")
        repl = self._info("replication")
        if server.get("run_id") != plan.pins["run_id"]:
            raise PreconditionError(
                f"redis {self.instance} restarted or was replaced since the plan "
                f"(run_id {plan.pins['run_id']}→{server.get('run_id')}); re-run to re-plan"
            )
        if repl.get("role") != plan.pins["role"]:
            raise PreconditionError(
                f"redis {self.instance} changed role since the plan "
                f"({plan.pins['role']}→{repl.get('role')}); re-run to re-plan"
            )
        self._call("FLUSHALL")
        return Outcome(
            "applied",
            f"redis {self.instance} flushed ({plan.details['total_keys']} keys deleted)",
            {"deleted_keys": plan.details["total_keys"]},
        )

    def verify(self, plan: Plan, outcome: Outcome) -> Verification | None:
        if outcome.status != "applied":
            return None
        keyspace = self._info("keyspace")
        memory = self._info("memory")  # read now: someone may have changed the policy meanwhile
        self.close()
        now = _total(keyspace)
        before = int(plan.details["total_keys"])
        message = f"keys: {before} → {now}" + (" (new keys since the flush)" if now else "")
        if memory.get("maxmemory_policy") == "noeviction" and int(memory.get("maxmemory") or 0):
            message += "; maxmemory-policy is still noeviction"
        return Verification(
            now < before,
            message,
            before={"keys": before},
            after={"keys": now},
        )
