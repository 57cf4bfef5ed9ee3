"""The memory store through the Python API: decisions, options, lifecycle."""

from __future__ import annotations

import gc
import math
import pickle
import threading

import pytest

import tollgate
from tollgate import Decision, InvalidArgument, Limiter, Policy, UnsupportedError

T0 = 1_700_000_000_000_000  # a fixed clock reading, us


class Clock:
    def __init__(self, now_us: int = T0) -> None:
        self.now = now_us

    def __call__(self) -> int:
        return self.now

    def advance_ms(self, ms: int) -> None:
        self.now += ms * 1000


def test_basic_gcra_sequence():
    clock = Clock()
    with Limiter(clock=clock) as lim:
        p = Policy(5, "1s")
        seen = [lim.check("user:1", p) for _ in range(6)]
        assert [d.allowed for d in seen] == [True] * 5 + [False]
        assert [d.remaining for d in seen] == [4, 3, 2, 1, 0, 0]
        denied = seen[-1]
        assert denied.retry_after == pytest.approx(0.2)
        assert denied.retry_after_ms == 200
        assert denied.reset_after == pytest.approx(1.0)
        assert denied.reset_after_ms == 1000
        assert denied.limit == 5
        assert denied.source == "store"
        assert denied.policy_index == 0
        assert not denied and seen[0]
        clock.advance_ms(200)
        assert lim.check("user:1", p).allowed


def test_decision_is_immutable_and_comparable():
    lim = Limiter(clock=Clock())
    d = lim.check("k", Policy(2, 1))
    assert isinstance(d, Decision)
    for field in ("allowed", "limit", "remaining", "reset_after", "retry_after", "source", "policy_index"):
        with pytest.raises(AttributeError):
            setattr(d, field, 1)
    with pytest.raises(AttributeError):
        d.extra = 1  # type: ignore[attr-defined]
    other = Limiter(clock=Clock()).check("k", Policy(2, 1))
    assert d == other and hash(d) == hash(other)
    assert d != lim.check("k", Policy(2, 1))
    assert "allowed=True" in repr(d) and "source='store'" in repr(d)
    assert isinstance(d.retry_after, float) and isinstance(d.reset_after, float)
    assert bool(d) is True and type(d).__name__ == "Decision"
    with pytest.raises(TypeError):
        Decision()  # only checks make decisions
    with pytest.raises(TypeError, match="cannot pickle"):
        pickle.dumps(d)
    assert (d == 1) is False and d != "x"


def test_str_and_bytes_keys_are_the_same_key():
    lim = Limiter(clock=Clock())
    p = Policy(2, "1h")
    assert lim.check("café", p).remaining == 1
    assert lim.check("café".encode(), p).remaining == 0
    assert not lim.check(b"caf\xc3\xa9", p).allowed
    # binary keys, NUL bytes included
    assert lim.check(b"\x00\xff\x00", p).remaining == 1


def test_cost_peek_and_never():
    lim = Limiter(clock=Clock())
    p = Policy(10, "1m")
    assert lim.check("k", p, cost=4).remaining == 6
    peek = lim.check("k", p, cost=0)
    assert peek.allowed and peek.remaining == 6
    assert lim.check("k", p, cost=0).remaining == 6  # a peek charges nothing
    never = lim.check("k", p, cost=11)
    assert not never.allowed
    assert never.retry_after == math.inf
    assert never.retry_after_ms == -1
    assert lim.check("k", p, cost=6).remaining == 0


def test_denied_charges_nothing_and_multi_policy():
    lim = Limiter(clock=Clock())
    # Named: a policy's state is its name's, wherever it stands in a list
    # (unnamed, it would be its position's).
    per_sec = Policy(3, "1s", name="second")
    per_min = Policy(5, "1m", name="minute")
    for _ in range(3):
        assert lim.check("k", per_sec, per_min).allowed
    d = lim.check("k", per_sec, per_min)
    assert not d.allowed and d.policy_index == 0 and d.limit == 3
    # the per-minute policy was not charged by the denial
    assert lim.check("k", per_min, cost=0).remaining == 2


def test_reset():
    lim = Limiter(clock=Clock())
    p = Policy(1, "1h")
    assert lim.check("k", p).allowed
    assert not lim.check("k", p).allowed
    lim.reset("k")
    assert lim.check("k", p).allowed
    lim.reset(b"never-seen")  # resetting a key without state succeeds


def test_algorithms_all_work():
    for alg in ("gcra", "token_bucket", "fixed_window", "sliding_window"):
        lim = Limiter(clock=Clock())
        p = Policy(3, "1s", alg)
        assert [lim.check("k", p).allowed for _ in range(4)] == [True, True, True, False], alg


def test_health_ping_keys_on_memory():
    lim = Limiter(max_keys=100, shards=4, clock=Clock())
    p = Policy(1, "1h")
    lim.check("a", p)
    lim.check("a", p)
    h = lim.health()
    assert h["store"] == "memory" and h["connection"] == "none"
    assert (h["checks"], h["allowed"], h["denied"], h["live_keys"]) == (2, 1, 1, 1)
    assert h["last_ping"] is None
    assert lim.ping() == 0.0
    with pytest.raises(UnsupportedError) as info:
        lim.keys(p)
    assert info.value.code == "RL_E_UNSUPPORTED"
    assert lim.store == "memory"


def test_max_keys_evicts():
    lim = Limiter(max_keys=64, shards=1, clock=Clock())
    p = Policy(1, "1h")
    for i in range(500):
        assert lim.check("key-%d" % i, p).allowed
    h = lim.health()
    assert h["live_keys"] <= 64
    assert h["evictions"] >= 500 - 64


def test_max_key_len():
    lim = Limiter(max_key_len=8)
    p = Policy(1, 1)
    assert lim.check("x" * 8, p).allowed
    with pytest.raises(InvalidArgument) as info:
        lim.check("x" * 9, p)
    assert info.value.code == "RL_E_KEY_TOO_LONG"


def test_close_and_context_manager():
    with Limiter() as lim:
        assert lim.check("k", Policy(1, 1)).allowed
        assert "memory" in repr(lim)
    assert lim.closed and "closed" in repr(lim)
    lim.close()  # idempotent
    for call in (
        lambda: lim.check("k", Policy(1, 1)),
        lambda: lim.reset("k"),
        lambda: lim.ping(),
        lambda: lim.health(),
        lambda: lim.keys(Policy(1, 1)),
    ):
        with pytest.raises(tollgate.TollgateConnectionError) as info:
            call()
        assert info.value.code == "RL_E_CLOSED"


def test_close_waits_for_calls_in_other_threads():
    # A clock that blocks holds a check open; close() must wait for it.
    entered = threading.Event()
    release = threading.Event()

    def slow_clock() -> int:
        entered.set()
        release.wait(5)
        return T0

    lim = Limiter(clock=slow_clock)
    result = []
    t = threading.Thread(target=lambda: result.append(lim.check("k", Policy(1, 1))))
    t.start()
    assert entered.wait(5)
    closer = threading.Thread(target=lim.close)
    closer.start()
    closer.join(0.2)
    assert closer.is_alive()  # still waiting for the check
    release.set()
    t.join(5)
    closer.join(5)
    assert not closer.is_alive()
    assert result and result[0].allowed
    assert lim.closed


def test_clock_errors_propagate():
    def broken() -> int:
        raise RuntimeError("clock is broken")

    lim = Limiter(clock=broken)
    with pytest.raises(RuntimeError, match="clock is broken"):
        lim.check("k", Policy(1, 1))
    lim2 = Limiter(clock=lambda: 1.5)
    with pytest.raises(TypeError, match="clock must return int"):
        lim2.check("k", Policy(1, 1))
    lim3 = Limiter(clock=lambda: -1)
    with pytest.raises(InvalidArgument) as info:
        lim3.check("k", Policy(1, 1))
    assert info.value.code == "RL_E_OVERFLOW"
    lim4 = Limiter(clock=lambda: 2**80)
    with pytest.raises(InvalidArgument):
        lim4.check("k", Policy(1, 1))
    # the limiter still works once the clock does
    ok = Clock()
    lim5 = Limiter(clock=ok)
    assert lim5.check("k", Policy(1, 1)).allowed


def test_clock_cannot_close_its_limiter():
    holder = {}

    def clock() -> int:
        holder["lim"].close()
        return T0

    holder["lim"] = Limiter(clock=clock)
    with pytest.raises(RuntimeError, match="cannot be closed from its clock"):
        holder["lim"].check("k", Policy(1, 1))
    holder["lim"].close()


def test_garbage_collected_limiter_and_iterator_order():
    # Dropping a limiter without close() is fine; so is any order.
    for _ in range(50):
        lim = Limiter(clock=Clock())
        lim.check("k", Policy(1, 1))
        del lim
    gc.collect()


def test_subclass_and_pickle_errors():
    e = InvalidArgument("bad key", "RL_E_KEY_INVALID")
    e2 = pickle.loads(pickle.dumps(e))
    assert type(e2) is InvalidArgument and e2.code == "RL_E_KEY_INVALID" and str(e2) == "bad key"
