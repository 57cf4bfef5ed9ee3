"""The shared vectors (tests/vectors/*.json at the repository root), replayed
through the Python API with a clock the test controls.

Memory store: always. Redis store: only when the package was built with
-DTOLLGATE_TESTING=ON (a release build refuses a clock for Redis, so there is
no way to pin the time), e.g.

    pip install ./bindings/python -Ccmake.define.TOLLGATE_TESTING=ON
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

import tollgate
from tollgate import Limiter, Policy

from conftest import VECTORS_DIR

# The files every checkout has; any other tests/vectors/*.json (block.json,
# multi_key.json, and files added later) is replayed too, so a new file
# cannot be left out.
REQUIRED = ["gcra.json", "token_bucket.json", "fixed_window.json", "sliding_window.json", "multi_policy.json",
            "refund.json", "carry_over.json"]
FILES = REQUIRED + (
    sorted(p.name for p in VECTORS_DIR.glob("*.json") if p.name not in REQUIRED) if VECTORS_DIR.is_dir() else []
)

pytestmark = pytest.mark.skipif(
    not VECTORS_DIR.is_dir(), reason="the repository's tests/vectors/ is not available"
)


def load(name: str) -> Dict[str, Any]:
    doc = json.loads((VECTORS_DIR / name).read_text(encoding="utf-8"))
    assert doc["format"] == 2
    return doc


def cases() -> List[Any]:
    if not VECTORS_DIR.is_dir():
        return []
    out = []
    for name in FILES:
        for i, case in enumerate(load(name)["cases"]):
            out.append(pytest.param(name, i, case, id="%s:%s" % (name, case["name"])))
    return out


class StepClock:
    def __init__(self) -> None:
        self.now_us = 0

    def __call__(self) -> int:
        return self.now_us


def make_policies(raw_list: List[Dict[str, Any]]) -> List[Policy]:
    policies = [
        Policy(
            p["limit"],
            p["period_ms"] / 1000 if p["period_ms"] % 1000 == 0 else "%dms" % p["period_ms"],
            p["algorithm"],
            burst=p.get("burst") or None,
            name=p.get("name"),
            # a block: block_ms, and optional strikes within strikes_period_ms
            block="%dms" % p["block_ms"] if p.get("block_ms") else None,
            strikes=p.get("strikes") or None,
            strikes_period="%dms" % p["strikes_period_ms"] if p.get("strikes_period_ms") else None,
            shadow=bool(p.get("shadow", False)),
        )
        for p in raw_list
    ]
    for p, raw in zip(policies, raw_list):
        assert p.period_ms == raw["period_ms"]
        assert p.name == raw.get("name")
        assert (p.block_ms, p.strikes, p.strikes_period_ms) == (
            raw.get("block_ms") or None,
            raw.get("strikes") or None,
            raw.get("strikes_period_ms") or None,
        )
    return policies


def replay_op(op: str, step: Dict[str, Any], key: Any, limiter: Limiter, where: str) -> None:
    """A step that is not a check: "reset", "block" (with "duration_ms", and
    "expect_error" when it must fail) or "unblock"."""
    if op == "reset":
        limiter.reset(key)
    elif op == "block":
        # The duration in exact milliseconds (an int would be seconds); one
        # below 1 ms as a timedelta, which "-5ms" could not spell. The
        # library refuses a bad one with the expected code.
        ms = step["duration_ms"]
        duration = "%dms" % ms if ms >= 1 else datetime.timedelta(milliseconds=ms)
        if "expect_error" in step:
            with pytest.raises(tollgate.Error) as info:
                limiter.block(key, duration)
            assert info.value.code == step["expect_error"], where
        else:
            limiter.block(key, duration)
    elif op == "unblock":
        assert "expect_error" not in step, where
        limiter.unblock(key)
    else:
        raise AssertionError("unknown op: " + where)


def replay(file: str, case: Dict[str, Any], limiter: Limiter, clock: StepClock) -> None:
    # The case's policies; a step's "policies" replaces them from that step on.
    policies = make_policies(case["policies"])
    for i, step in enumerate(case["steps"]):
        where = "%s, case %r, step %d: %s" % (file, case["name"], i, json.dumps(step))
        if "policies" in step:
            policies = make_policies(step["policies"])
        assert ("t_ms" in step) != ("t_us" in step), where
        clock.now_us = step["t_ms"] * 1000 if "t_ms" in step else step["t_us"]
        key = step.get("key", case["key"])
        op = step.get("op", "check")
        if op == "check_keys":
            # Several (key, policies) pairs in one decision; policy_index
            # counts the policies pair by pair.
            pairs = [(pair["key"], make_policies(pair["policies"])) for pair in step["pairs"]]

            def call(cost: int) -> tollgate.Decision:
                return limiter.check_keys(pairs, cost=cost)
        elif op == "check":

            def call(cost: int) -> tollgate.Decision:
                return limiter.check(key, *policies, cost=cost)
        else:
            replay_op(op, step, key, limiter, where)
            continue
        if "expect_error" in step:
            with pytest.raises(tollgate.Error) as info:
                call(step["cost"])
            assert info.value.code == step["expect_error"], where
            continue
        d = call(step["cost"])
        e = step["expect"]
        got = {
            "allowed": d.allowed,
            "limit": d.limit,
            "remaining": d.remaining,
            "reset_after_ms": d.reset_after_ms,
            "retry_after_ms": d.retry_after_ms,
            "policy_index": d.policy_index,
        }
        assert got == {k: e[k] for k in got}, where
        assert d.shadow == e.get("shadow", False), where
        assert d.source == "store", where
        # the float seconds agree with the integer milliseconds
        assert d.reset_after == e["reset_after_ms"] / 1000, where
        if e["retry_after_ms"] == -1:
            assert d.retry_after == float("inf"), where
        else:
            assert d.retry_after == e["retry_after_ms"] / 1000, where


def test_all_files_have_cases():
    for name in FILES:
        assert load(name)["cases"], name


# The block and unblock ops on a case of this file's own, so the replayer's
# handling of them is proven whether or not tests/vectors/block.json exists.
T = 1_700_000_000_000  # ms
SYNTHETIC = {
    "name": "block and unblock ops",
    "key": "synthetic",
    "policies": [{"algorithm": "gcra", "limit": 2, "period_ms": 1000}],
    "steps": [
        {"t_ms": T, "op": "block", "duration_ms": 0, "expect_error": "RL_E_INVALID_ARG"},
        {"t_ms": T, "op": "block", "duration_ms": -1, "expect_error": "RL_E_INVALID_ARG"},
        {"t_ms": T, "op": "block", "duration_ms": 2**40 + 1, "expect_error": "RL_E_INVALID_ARG"},
        {"t_ms": T, "cost": 1, "expect": {"allowed": True, "limit": 2, "remaining": 1, "reset_after_ms": 500,
                                          "retry_after_ms": 0, "policy_index": 0}},
        {"t_ms": T, "op": "block", "duration_ms": 1000},
        # blocked: denied though a unit is left; the wait is the block's
        {"t_ms": T + 100, "cost": 1, "expect": {"allowed": False, "limit": 2, "remaining": 0, "reset_after_ms": 900,
                                                "retry_after_ms": 900, "policy_index": 0}},
        {"t_ms": T + 200, "op": "unblock"},
        {"t_ms": T + 200, "cost": 1, "expect": {"allowed": True, "limit": 2, "remaining": 0, "reset_after_ms": 800,
                                                "retry_after_ms": 0, "policy_index": 0}},
        # a policy's block: the next denial blocks for 5 s
        {"t_ms": T + 200, "cost": 1, "policies": [{"algorithm": "gcra", "limit": 2, "period_ms": 1000,
                                                   "block_ms": 5000}],
         "expect": {"allowed": False, "limit": 2, "remaining": 0, "reset_after_ms": 5000,
                    "retry_after_ms": 5000, "policy_index": 0}},
        {"t_ms": T + 1200, "cost": 1, "expect": {"allowed": False, "limit": 2, "remaining": 0, "reset_after_ms": 4000,
                                                 "retry_after_ms": 4000, "policy_index": 0}},
        {"t_ms": T + 1200, "op": "reset"},
        {"t_ms": T + 1200, "cost": 1, "expect": {"allowed": True, "limit": 2, "remaining": 1, "reset_after_ms": 500,
                                                 "retry_after_ms": 0, "policy_index": 0}},
    ],
}


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_replayer_handles_block_ops(store, request):
    clock = StepClock()
    if store == "memory":
        lim: Optional[Limiter] = Limiter(clock=clock)
    else:
        lim = _redis_limiter(request.getfixturevalue("redis_server").url, request.getfixturevalue("prefix"), clock)
        if lim is None:
            pytest.skip("this build takes no clock for Redis (configure with -DTOLLGATE_TESTING=ON)")
    assert lim is not None
    with lim:
        replay("synthetic", SYNTHETIC, lim, clock)
    # an unknown op is refused, not skipped
    with Limiter(clock=clock) as lim2, pytest.raises(AssertionError, match="unknown op"):
        replay("synthetic", {"name": "x", "key": "k", "policies": SYNTHETIC["policies"],
                             "steps": [{"t_ms": T, "op": "freeze"}]}, lim2, clock)


# The check_keys op on a case of this file's own, as SYNTHETIC is for the
# block ops: proven whether or not tests/vectors/multi_key.json exists.
G = {"algorithm": "gcra", "limit": 2, "period_ms": 1000, "name": "global"}
R = {"algorithm": "fixed_window", "limit": 1, "period_ms": 1000, "name": "route"}
SYNTHETIC_KEYS = {
    "name": "check_keys op",
    "key": "g",
    "policies": [G],
    "steps": [
        {"t_ms": T, "op": "check_keys", "pairs": [{"key": "g", "policies": [G]}, {"key": "r|g", "policies": [R]}],
         "cost": 1, "expect": {"allowed": True, "limit": 1, "remaining": 0, "reset_after_ms": 1000,
                               "retry_after_ms": 0, "policy_index": 1}},
        # the route denies: nothing is charged under the global limit
        {"t_ms": T + 100, "op": "check_keys",
         "pairs": [{"key": "g", "policies": [G]}, {"key": "r|g", "policies": [R]}],
         "cost": 1, "expect": {"allowed": False, "limit": 1, "remaining": 0, "reset_after_ms": 900,
                               "retry_after_ms": 900, "policy_index": 1}},
        {"t_ms": T + 100, "cost": 0, "expect": {"allowed": True, "limit": 2, "remaining": 1, "reset_after_ms": 400,
                                                "retry_after_ms": 0, "policy_index": 0}},
        {"t_ms": T + 100, "op": "check_keys", "pairs": [{"key": "g", "policies": [G]}, {"key": "g", "policies": [R]}],
         "cost": 1, "expect_error": "RL_E_INVALID_ARG"},
    ],
}


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_replayer_handles_the_check_keys_op(store, request):
    clock = StepClock()
    if store == "memory":
        lim: Optional[Limiter] = Limiter(clock=clock)
    else:
        lim = _redis_limiter(request.getfixturevalue("redis_server").url, request.getfixturevalue("prefix"), clock)
        if lim is None:
            pytest.skip("this build takes no clock for Redis (configure with -DTOLLGATE_TESTING=ON)")
    assert lim is not None
    with lim:
        replay("synthetic", SYNTHETIC_KEYS, lim, clock)


@pytest.mark.parametrize("file, index, case", cases())
def test_vector_memory(file, index, case):
    clock = StepClock()
    with Limiter(clock=clock) as lim:
        replay(file, case, lim, clock)


def _redis_limiter(url: str, prefix: str, clock: StepClock) -> Optional[Limiter]:
    try:
        return Limiter(url, clock=clock, key_prefix=prefix, deny_cache=False, failure_mode="error")
    except tollgate.UnsupportedError:
        return None


@pytest.mark.parametrize("file, index, case", cases())
def test_vector_redis(file, index, case, redis_server, prefix):
    clock = StepClock()
    lim = _redis_limiter(redis_server.url, prefix, clock)
    if lim is None:
        pytest.skip("this build takes no clock for Redis (configure with -DTOLLGATE_TESTING=ON)")
    with lim:
        replay(file, case, lim, clock)
