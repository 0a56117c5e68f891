"""`mitigate redis-flush` against real redis-servers (reliability cases 22, 23, 24).

Each test owns its instance: FLUSHALL empties every database of a server.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from somactl.lab.runtime import RedisInstance, StateFile, start_redis
from tests.integration.conftest import launch
from tests.mitigate.conftest import Env, Pty, Run, set_env


@pytest.fixture
def make_redis(tmp_path: Path) -> Iterator[Callable[..., RedisInstance]]:
    started: list[RedisInstance] = []
    state = StateFile(tmp_path / "redis-state.json")

    def start(name: str = "redis", **kw: Any) -> RedisInstance:
        inst = launch(lambda: start_redis(tmp_path / name, state=state, name=name, **kw))
        started.append(inst)
        return inst

    yield start
    for inst in started:
        inst.stop()


def fill(inst: RedisInstance, counts: dict[int, int]) -> None:
    for db, n in counts.items():
        c = inst.client(db=db)
        try:
            pipe = c.pipeline()
            for i in range(n):
                pipe.set(f"cache:{i}", "v")
            pipe.execute()
        finally:
            c.close()


def dbsizes(inst: RedisInstance) -> dict[int, int]:
    out = {}
    for db in range(16):
        c = inst.client(db=db)
        try:
            n = int(c.dbsize())
        finally:
            c.close()
        if n:
            out[db] = n
    return out


def point_at(env: Env, mp: pytest.MonkeyPatch, inst: RedisInstance, user: str | None) -> None:
    who = f"{user}@" if user else ""
    password = inst.user_passwords[user] if user else (inst.password or "")
    set_env(
        env,
        mp,
        SOMACTL_REDIS_URL=f"redis://{who}{inst.host}:{inst.port}/0",
        REDISCLI_AUTH=password,
    )


def test_case23_plan_shows_what_is_lost_and_only_the_typed_name_flushes(
    env: Env,
    make_redis: Callable[..., RedisInstance],
    spawn: Callable[..., Pty],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inst = make_redis(requirepass=True, extra_config={"save": "3600 1"})
    fill(inst, {0: 1200, 2: 30})
    point_at(env, monkeypatch, inst, "oncall")
    name = f"{inst.host}:{inst.port}"
    for wrong in ("yes\n", "redis\n", "\n"):
        p = spawn(env, "mitigate", "redis-flush", "--verify", "0")
        screen = p.expect(f"Type the name '{name}' to delete every key of redis {name}")
        p.send(wrong)
        r = p.finish()
        assert r.rc == 4, r.err
        assert dbsizes(inst) == {0: 1200, 2: 30}
    assert "FLUSHALL on redis" in r.out and "delete all 1230 keys in 2 databases" in r.out
    assert "role: master" in r.out and "user: oncall" in r.out
    assert "keys: db0=1200, db2=30" in r.out
    assert "persistence: RDB save '3600 1'" in r.out
    assert "FLUSHALL also clears the dataset on disk" in r.out
    assert "consent: type the name" in r.out
    del screen
    p = spawn(env, "mitigate", "redis-flush", "--verify", "5s")
    p.expect(f"Type the name '{name}'")
    p.send(f"{name}\n")
    r = p.finish()
    assert r.rc == 0, r.err
    assert f"APPLIED: redis {name} flushed (1230 keys deleted)" in r.out
    # a flush contains memory pressure; what filled the cache is still running
    assert "CONTAINED: keys: 1230 → 0" in r.out and "RECOVERED" not in r.out
    assert "still there: an empty cache fills again at the same rate" in r.out
    assert "noeviction" not in r.out.replace("under maxmemory-policy noeviction", "")
    assert dbsizes(inst) == {}
    recs = env.records("mitigate.redis-flush")
    assert [x["phase"] for x in recs] == ["aborted", "aborted", "aborted", "intent", "result"]
    assert recs[-1]["outcome"] == "ok" and recs[-2]["plan"]["consent"] == "typed name"


def test_case22_user_without_dangerous_gets_noperm_and_nothing_is_deleted(
    env: Env,
    make_redis: Callable[..., RedisInstance],
    cli: Callable[..., Run],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inst = make_redis(requirepass=True)
    fill(inst, {0: 50})
    point_at(env, monkeypatch, inst, "oncall-restricted")
    r = cli("mitigate", "redis-flush", "--yes", "--verify", "0")
    assert r.rc == 7, (r.out, r.err)
    assert "could not pre-check the permission" in r.out
    assert "NOPERM" in r.err and "flushall" in r.err.lower()
    assert dbsizes(inst) == {0: 50}
    result = [x for x in env.records("mitigate.redis-flush") if x["phase"] == "result"]
    assert result[0]["outcome"] == "failed"


def test_case22_acl_dryrun_refuses_before_anyone_is_asked(
    env: Env,
    make_redis: Callable[..., RedisInstance],
    cli: Callable[..., Run],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inst = make_redis(requirepass=True)
    fill(inst, {0: 5})
    admin = inst.client()
    try:
        admin.execute_command("ACL", "SETUSER", "noflush", "on", ">noflush-pw", "~*", "&*",
                              "+@all", "-flushall")  # fmt: skip
    finally:
        admin.close()
    set_env(
        env,
        monkeypatch,
        SOMACTL_REDIS_URL=f"redis://noflush@{inst.host}:{inst.port}/0",
        REDISCLI_AUTH="noflush-pw",
    )
    r = cli("mitigate", "redis-flush")  # no --yes and no terminal: refused for permission first
    assert r.rc == 7, r.err
    assert "NOPERM user noflush may not run flushall" in r.err
    assert dbsizes(inst) == {0: 5}
    assert env.records() == []


def test_case24_a_replica_is_refused(
    env: Env,
    make_redis: Callable[..., RedisInstance],
    cli: Callable[..., Run],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    primary = make_redis("primary", acl_users=None)
    replica = make_redis("replica", acl_users=None)
    c = replica.client()
    try:
        c.execute_command("REPLICAOF", primary.host, str(primary.port))
    finally:
        c.close()
    point_at(env, monkeypatch, replica, None)
    r = cli("mitigate", "redis-flush", "--yes")
    assert r.rc == 5, r.err
    assert f"target is a replica; writes go to primary {primary.host}:{primary.port}" in r.err


def test_dry_run_and_empty_instance(
    env: Env,
    make_redis: Callable[..., RedisInstance],
    cli: Callable[..., Run],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inst = make_redis(requirepass=True)
    point_at(env, monkeypatch, inst, "oncall")
    empty = cli("mitigate", "redis-flush", "--yes")
    assert empty.rc == 0 and "nothing to do: redis" in empty.out and "has no keys" in empty.out
    fill(inst, {0: 7, 5: 3})
    dry = cli("mitigate", "redis-flush", "--dry-run")
    assert dry.rc == 0 and "dry run: nothing was changed" in dry.out
    assert dbsizes(inst) == {0: 7, 5: 3}
    srv = cli("mitigate", "redis-flush", "--dry-run=server")
    assert srv.rc == 2 and "no server-side dry run" in srv.err
    assert dbsizes(inst) == {0: 7, 5: 3}
    wrong = cli("mitigate", "redis-flush", "--yes")  # --yes approves even a typed-name action
    assert wrong.rc == 0 and dbsizes(inst) == {}


def test_noeviction_is_named_in_the_plan_and_after_the_flush(
    env: Env,
    make_redis: Callable[..., RedisInstance],
    cli: Callable[..., Run],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inst = make_redis(requirepass=True, maxmemory_policy="noeviction")
    fill(inst, {0: 40})
    point_at(env, monkeypatch, inst, "oncall")
    r = cli("-o", "json", "mitigate", "redis-flush", "--yes", "--verify", "5s")
    assert r.rc == 0, r.err
    data = json.loads(r.out)["data"]
    assert any("maxmemory-policy is noeviction" in w for w in data["plan"]["warnings"]), data
    assert data["plan"]["details"]["maxmemory_policy"] == "noeviction"
    v = data["verification"]
    assert v["recovered"] is True and v["contained"] is True, v
    assert v["remains"].startswith("an empty cache fills again"), v
    assert "maxmemory-policy is still noeviction" in v["message"], v
    assert dbsizes(inst) == {}
