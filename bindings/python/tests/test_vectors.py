"""The shared vectors (tests/vectors/*.json at the repository root), replayed
through the Python API with a clock the test controls.

Memory store: always. Redis store: only when the package was built with
-DTOLLGATE_TESTING=ON (a release build refuses a clock for Redis, so there is
no way to pin the time), e.g.

    pip install ./bindings/python -Ccmake.define.TOLLGATE_TESTING=ON
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

import tollgate
from tollgate import Limiter, Policy

from conftest import VECTORS_DIR

FILES = ["gcra.json", "token_bucket.json", "fixed_window.json", "sliding_window.json", "multi_policy.json",
         "refund.json", "carry_over.json"]

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
        )
        for p in raw_list
    ]
    for p, raw in zip(policies, raw_list):
        assert p.period_ms == raw["period_ms"]
        assert p.name == raw.get("name")
    return policies


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
        if op == "reset":
            limiter.reset(key)
            continue
        assert op == "check", where
        if "expect_error" in step:
            with pytest.raises(tollgate.Error) as info:
                limiter.check(key, *policies, cost=step["cost"])
            assert info.value.code == step["expect_error"], where
            continue
        d = limiter.check(key, *policies, cost=step["cost"])
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
