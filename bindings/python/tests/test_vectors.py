"""The shared vectors (tests/vectors/*.json at the repository root), replayed
through the Python API with a clock the test controls: checks, blocks and
resets through Limiter, lease steps through Limiter.acquire and
Lease.renew / Lease.release, list steps through Limiter.set_allow_list /
set_deny_list, errors as the exception classes the binding documents.

Memory store: always. Redis store: only when the package was built with
-DTOLLGATE_TESTING=ON (a release build refuses a clock for Redis, so there is
no way to pin the time), e.g.

    pip install ./bindings/python -Ccmake.define.TOLLGATE_TESTING=ON
"""

from __future__ import annotations

import copy
import datetime
import json
from typing import Any, Callable, Dict, List, Optional, Type, TypeVar, Union

import pytest

import tollgate
from tollgate import InvalidArgument, Lease, LeaseLost, Limiter, NothingToRefund, Policy

from conftest import VECTORS_DIR, Clock, Store

# The files every checkout has; any other tests/vectors/*.json (block.json,
# multi_key.json, and files added later) is replayed too, so a new file
# cannot be left out.
REQUIRED = ["gcra.json", "token_bucket.json", "fixed_window.json", "sliding_window.json", "multi_policy.json",
            "refund.json", "carry_over.json", "leases.json", "lists.json"]
# The one format this replayer reads (tests/vectors/README.md, "Format"): an
# older or newer file could hold steps it would replay wrongly.
FORMAT = 3
FILES = REQUIRED + (
    sorted(p.name for p in VECTORS_DIR.glob("*.json") if p.name not in REQUIRED) if VECTORS_DIR.is_dir() else []
)

pytestmark = pytest.mark.skipif(
    not VECTORS_DIR.is_dir(), reason="the repository's tests/vectors/ is not available"
)


def load(name: str) -> Dict[str, Any]:
    doc = json.loads((VECTORS_DIR / name).read_text(encoding="utf-8"))
    assert doc["format"] == FORMAT, "%s is format %r; this replayer reads format %d" % (name, doc["format"], FORMAT)
    return doc


def cases() -> List[Any]:
    if not VECTORS_DIR.is_dir():
        return []
    out = []
    for name in FILES:
        for i, case in enumerate(load(name)["cases"]):
            out.append(pytest.param(name, i, case, id="%s:%s" % (name, case["name"])))
    return out


Out = TypeVar("Out")

# The fields of a check's decision and of an acquire's answer, compared
# exactly; "shadow" and "source" are compared too, with their defaults.
DECISION_FIELDS = ("allowed", "limit", "remaining", "reset_after_ms", "retry_after_ms", "policy_index")
LEASE_FIELDS = ("acquired", "in_flight", "max_in_flight", "retry_after_ms")

# The exception class each expected code surfaces as (docs/python.md,
# "Errors"); a renewal's RL_E_NOT_FOUND is LeaseLost, a refund's
# NothingToRefund.
ERROR_CLASSES: Dict[str, Type[tollgate.Error]] = {
    "RL_E_INVALID_ARG": InvalidArgument,
    "RL_E_KEY_INVALID": InvalidArgument,
    "RL_E_POLICY": InvalidArgument,
    "RL_E_NOT_FOUND": NothingToRefund,
}


def span(ms: int) -> Union[str, datetime.timedelta]:
    """`ms` milliseconds as a duration argument: exact text (an int would be
    seconds), or below 1 ms a timedelta, which "-5ms" could not spell. The
    library refuses one out of range with the expected code."""
    return "%dms" % ms if ms >= 1 else datetime.timedelta(milliseconds=ms)


def outcome(step: Dict[str, Any], where: str, call: Callable[[], Out]) -> Optional[Out]:
    """The step's call: with "expect_error" it must raise that code (as the
    class the binding documents for it), and None is returned; else what it
    returns."""
    if "expect_error" not in step:
        return call()
    code = step["expect_error"]
    with pytest.raises(tollgate.Error) as info:
        call()
    assert info.value.code == code, where
    expected = LeaseLost if step.get("op") == "renew" and code == "RL_E_NOT_FOUND" else ERROR_CLASSES[code]
    assert type(info.value) is expected, where
    return None


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
        outcome(step, where, lambda: limiter.block(key, span(step["duration_ms"])))
    elif op == "unblock":
        assert "expect_error" not in step, where
        limiter.unblock(key)
    else:
        raise AssertionError("unknown op: " + where)


def replay_lease_or_list(
    op: str, step: Dict[str, Any], key: Any, limiter: Limiter, leases: Dict[str, Lease], where: str
) -> None:
    """A lease or list step: "acquire" (a lease it gets is bound to the
    step's label in `leases`; a denied or failed one binds nothing),
    "renew" or "release" (of the lease so labelled), or "set_list"."""
    if op == "set_list":
        setter = {"allow": limiter.set_allow_list, "deny": limiter.set_deny_list}[step["list"]]
        outcome(step, where, lambda: setter(step["entries"]))
        return
    label = step["lease"]
    if op == "acquire":
        got = outcome(
            step, where, lambda: limiter.acquire(key, max_in_flight=step["max_in_flight"], ttl=span(step["ttl_ms"]))
        )
        if got is None:
            return
        e = step["expect"]
        assert {f: getattr(got, f) for f in LEASE_FIELDS} == {f: e[f] for f in LEASE_FIELDS}, where
        assert got.source == e.get("source", "store"), where
        assert bool(got) is got.acquired and got.retry_after == e["retry_after_ms"] / 1000, where
        if got.lease is None:
            assert not got.acquired, where
            return
        assert got.acquired, where
        lease = got.lease
        assert (lease.in_flight, lease.max_in_flight, lease.ttl_ms) == (e["in_flight"], e["max_in_flight"],
                                                                        step["ttl_ms"]), where
        assert label not in leases, where  # a label names one lease
        leases[label] = lease
        return
    assert label in leases, "no lease acquired under this label: " + where
    if op == "renew":
        outcome(step, where, lambda: leases[label].renew(span(step["ttl_ms"])))
    elif op == "release":
        assert "expect_error" not in step, where
        assert leases[label].release() is step["expect"]["was_held"], where
    else:
        raise AssertionError("unknown op: " + where)


def replay(file: str, case: Dict[str, Any], limiter: Limiter, clock: Clock) -> None:
    # The case's policies; a step's "policies" replaces them from that step on.
    policies = make_policies(case["policies"])
    leases: Dict[str, Lease] = {}  # by label
    try:
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

                def call() -> tollgate.Decision:
                    return limiter.check_keys(pairs, cost=step["cost"])
            elif op == "check":

                def call() -> tollgate.Decision:
                    return limiter.check(key, *policies, cost=step["cost"])
            elif op in ("acquire", "renew", "release", "set_list"):
                replay_lease_or_list(op, step, key, limiter, leases, where)
                continue
            else:
                replay_op(op, step, key, limiter, where)
                continue
            d = outcome(step, where, call)
            if d is None:
                continue
            e = step["expect"]
            got = {f: getattr(d, f) for f in DECISION_FIELDS}
            got.update(shadow=d.shadow, source=d.source)
            want = {f: e[f] for f in DECISION_FIELDS}
            want.update(shadow=e.get("shadow", False), source=e.get("source", "store"))
            assert got == want, where
            # the float seconds agree with the integer milliseconds
            assert d.reset_after == e["reset_after_ms"] / 1000, where
            if e["retry_after_ms"] == -1:
                assert d.retry_after == float("inf"), where
            else:
                assert d.retry_after == e["retry_after_ms"] / 1000, where
    finally:
        leases.clear()  # the handles are freed (not released) with the case


def vector_limiter(store: Store, clock: Clock) -> Limiter:
    """A limiter of `store` on the steps' clock. On Redis a build with
    -DTOLLGATE_TESTING=ON pins the scripts' time to it (another build skips
    the test); no deny cache there: the vectors describe the store's own
    answers."""
    store.redis_options["deny_cache"] = False
    return store.limiter(clock=clock)


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


def test_replayer_handles_block_ops(store: Store) -> None:
    clock = Clock()
    replay("synthetic", SYNTHETIC, vector_limiter(store, clock), clock)
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


def test_replayer_handles_the_check_keys_op(store: Store) -> None:
    clock = Clock()
    replay("synthetic", SYNTHETIC_KEYS, vector_limiter(store, clock), clock)


# The replayer is not vacuous for the lease and list steps: a copy of a real
# case with one expected value changed fails (on the memory store), while
# the case as written passes.
MUTATIONS = [
    # (file, op of the step, field of its "expect" or, for expect_error, of the step, change)
    ("leases.json", "acquire", "acquired", lambda v: not v),
    ("leases.json", "acquire", "in_flight", lambda v: v + 1),
    ("leases.json", "acquire", "max_in_flight", lambda v: v + 1),
    ("leases.json", "acquire", "retry_after_ms", lambda v: v + 1),
    ("leases.json", "acquire", "expect_error", lambda v: "RL_E_POLICY"),
    ("leases.json", "renew", "expect_error", lambda v: "RL_E_POLICY"),
    ("leases.json", "release", "was_held", lambda v: not v),
    ("lists.json", "check", "source", lambda v: "deny_list" if v == "allow_list" else "allow_list"),
    ("lists.json", "check_keys", "source", lambda v: "deny_list" if v == "allow_list" else "allow_list"),
    ("lists.json", "set_list", "expect_error", lambda v: "RL_E_POLICY"),
]


def mutated(file: str, op: str, field: str, change: Callable[[Any], Any]) -> Dict[str, Any]:
    """The first case of `file` with a step of `op` that has `field`, as a
    copy with that field of that step changed."""
    for case in load(file)["cases"]:
        for i, step in enumerate(case["steps"]):
            holder = step if field == "expect_error" else step.get("expect", {})
            if step.get("op", "check") == op and field in holder:
                bad = copy.deepcopy(case)
                target = bad["steps"][i] if field == "expect_error" else bad["steps"][i]["expect"]
                target[field] = change(target[field])
                assert target[field] != holder[field]
                return bad
    raise AssertionError("no %s step with %s in %s" % (op, field, file))


@pytest.mark.parametrize("file, op, field, change", MUTATIONS, ids=["%s:%s.%s" % m[:3] for m in MUTATIONS])
def test_a_changed_expectation_fails(file: str, op: str, field: str, change: Callable[[Any], Any]) -> None:
    bad = mutated(file, op, field, change)
    (good,) = [c for c in load(file)["cases"] if c["name"] == bad["name"]]
    replay_on(Store("memory"), file, good)
    with pytest.raises((AssertionError, pytest.fail.Exception)):
        replay_on(Store("memory"), file, bad)


def test_a_denied_acquire_binds_no_label() -> None:
    case: Dict[str, Any] = {
        "name": "a denied acquire",
        "key": "k",
        "policies": SYNTHETIC["policies"],
        "steps": [
            {"t_ms": T, "op": "acquire", "lease": "a", "max_in_flight": 1, "ttl_ms": 1000,
             "expect": {"acquired": True, "in_flight": 1, "max_in_flight": 1, "retry_after_ms": 0}},
            {"t_ms": T, "op": "acquire", "lease": "b", "max_in_flight": 1, "ttl_ms": 1000,
             "expect": {"acquired": False, "in_flight": 1, "max_in_flight": 1, "retry_after_ms": 1000}},
            {"t_ms": T, "op": "release", "lease": "a", "expect": {"was_held": True}},
        ],
    }
    replay_on(Store("memory"), "synthetic", case)
    case["steps"].append({"t_ms": T, "op": "release", "lease": "b", "expect": {"was_held": False}})
    with pytest.raises(AssertionError, match="no lease acquired under this label"):
        replay_on(Store("memory"), "synthetic", case)


@pytest.mark.parametrize("file, index, case", cases())
def test_vector_memory(file, index, case):
    replay_on(Store("memory"), file, case)


@pytest.mark.parametrize("file, index, case", cases())
def test_vector_redis(file, index, case, redis_server, prefix):
    replay_on(Store("redis", redis_server, prefix), file, case)


def replay_on(store: Store, file: str, case: Dict[str, Any]) -> None:
    """One case on a limiter of its own (no state, no lists), closed after."""
    clock = Clock()
    try:
        replay(file, case, vector_limiter(store, clock), clock)
    finally:
        store.close()
