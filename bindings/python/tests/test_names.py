"""Policy names and identity: a key's state is kept under its policy's
identity (the name, or the position of an unnamed policy in the check's
list), so a changed limit keeps what was used; keys() lists the states of
the policies it is given, each with its policy and index."""

from __future__ import annotations

import pickle

import pytest

from tollgate import InvalidArgument, KeyState, Limiter, Policy

from conftest import needs_redis

T0 = 1_700_000_000_000_000  # a fixed clock reading, us


def fixed_clock() -> int:
    return T0


# ---- names -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["daily", "a", "A.b-c_9", "x" * 32])
def test_valid_names(name):
    p = Policy(100, "1h", name=name)
    assert p.name == name
    assert repr(p) == "Policy(100, '1h', name=%r)" % name
    assert p == Policy(100, 3600, name=name) and hash(p) == hash(Policy(100, 3600, name=name))
    assert pickle.loads(pickle.dumps(p)) == p


def test_unnamed_and_named_policies_differ():
    plain = Policy(100, "1h")
    assert plain.name is None and repr(plain) == "Policy(100, '1h')"
    assert Policy(100, "1h", name=None) == plain
    assert Policy(100, "1h", name="daily") != plain
    assert Policy(100, "1h", name="daily") != Policy(100, "1h", name="hourly")
    assert len({plain, Policy(100, "1h", name="daily"), Policy(100, "1h", name="daily")}) == 2
    # a pickle of the four fields before names existed still loads
    assert pickle.loads(pickle.dumps(plain)).name is None


def test_parse_reads_the_name():
    p = Policy.parse("100/h name=daily")
    assert (p.limit, p.period_ms, p.name) == (100, 3_600_000, "daily")
    assert p == Policy(100, "1h", name="daily")
    q = Policy.parse("10/s burst=20 token_bucket name=api.v2")
    assert (q.algorithm, q.burst, q.name) == ("token_bucket", 20, "api.v2")
    assert Policy.parse("100/h").name is None


@pytest.mark.parametrize(
    "name, message",
    [
        ("9lives", "starts with a letter"),
        ("-x", "starts with a letter"),
        ("a b", "letters, digits"),
        ("café", "letters, digits"),
        ("x" * 33, "at most 32"),
        ("", "must not be empty"),
    ],
)
def test_invalid_names_raise_a_clear_error(name, message):
    with pytest.raises(InvalidArgument) as info:
        Policy(1, "1s", name=name)
    assert info.value.code == "RL_E_POLICY"
    assert message in str(info.value)


def test_invalid_name_in_text():
    with pytest.raises(InvalidArgument) as info:
        Policy.parse("100/h name=9x")
    assert info.value.code == "RL_E_POLICY" and "at byte" in str(info.value)
    with pytest.raises(InvalidArgument):
        Policy.parse("100/h name=")
    with pytest.raises(InvalidArgument):
        Policy.parse("100/h name=a name=b")


def test_name_must_be_a_str_keyword():
    with pytest.raises(TypeError, match="name must be a str or None"):
        Policy(1, "1s", name=b"daily")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Policy(1, "1s", "gcra", None, "daily")  # type: ignore[misc]


def test_duplicate_names_in_one_check_are_refused():
    with Limiter(clock=fixed_clock) as lim:
        a, b = Policy(10, "1s", name="api"), Policy(100, "1h", name="api")
        with pytest.raises(InvalidArgument) as info:
            lim.check("k", a, b)
        assert info.value.code == "RL_E_POLICY" and "'api'" in str(info.value)
        with pytest.raises(InvalidArgument):
            lim.check("k", a, a)
        # nothing was charged
        assert lim.check("k", a, cost=0).remaining == 10
        # distinct names, or one named and one not, are fine
        assert lim.check("k", a, Policy(100, "1h", name="hourly")).allowed
        assert lim.check("k", a, Policy(100, "1h")).allowed


# ---- a changed limit keeps what was used -----------------------------------------


def used_then_raised(lim: Limiter, key: str, small: Policy, big: Policy, *others: Policy) -> int:
    for _ in range(60):
        assert lim.check(key, small, *others).allowed
    return lim.check(key, big, *others, cost=0).remaining


@pytest.mark.parametrize("algorithm", ["fixed_window", "sliding_window"])
def test_memory_limit_change_keeps_the_window_count(algorithm):
    with Limiter(clock=fixed_clock) as lim:
        # unnamed: the identity is the position (0)
        small, big = Policy(100, "1h", algorithm), Policy(1000, "1h", algorithm)
        assert used_then_raised(lim, "pos", small, big) == 940
        # named: the identity is the name, wherever the policy stands
        small_n = Policy(100, "1h", algorithm, name="hourly")
        big_n = Policy(1000, "1h", algorithm, name="hourly")
        other = Policy(5, "1s", name="burst")
        for _ in range(60):
            assert lim.check("named", small_n).allowed
        assert lim.check("named", other, big_n, cost=0).remaining == 5  # reports the tightest
        assert lim.check("named", big_n, cost=0).remaining == 940
        # lowering the limit below the usage denies
        assert not lim.check("named", Policy(50, "1h", algorithm, name="hourly")).allowed


@pytest.mark.parametrize("algorithm", ["gcra", "token_bucket"])
def test_memory_limit_change_keeps_the_used_share_of_the_period(algorithm):
    # GCRA and the token bucket keep the time their state is full again: 60
    # of 100/h used is 36 minutes of debt, 600 units of 1000/h.
    with Limiter(clock=fixed_clock) as lim:
        small, big = Policy(100, "1h", algorithm), Policy(1000, "1h", algorithm)
        assert used_then_raised(lim, "pos", small, big) == 400
        named_small = Policy(100, "1h", algorithm, name="hourly")
        named_big = Policy(1000, "1h", algorithm, name="hourly")
        assert used_then_raised(lim, "named", named_small, named_big) == 400


def test_position_is_the_identity_of_unnamed_policies():
    with Limiter(clock=fixed_clock) as lim:
        big, small = Policy(100, "1h", "fixed_window"), Policy(10, "1h", "fixed_window")
        for _ in range(3):
            lim.check("k", big, small)
        lim.check("k", big)  # position 0 only: 4 used there, 3 at position 1
        # swapping the list swaps the states: `small` now reads position 0
        d = lim.check("k", small, big, cost=0)
        assert (d.policy_index, d.remaining) == (0, 6)
        assert lim.check("k", big, small, cost=0).remaining == 7
        # with names, the order does not matter
        b, s = Policy(100, "1h", "fixed_window", name="b"), Policy(10, "1h", "fixed_window", name="s")
        for _ in range(3):
            lim.check("n", b, s)
        lim.check("n", b)
        assert lim.check("n", s, b, cost=0).remaining == 7
        assert lim.check("n", b, cost=0).remaining == 96
        # a window of another period does not carry its count
        assert lim.check("k", Policy(10, "1s", "fixed_window"), cost=0).remaining == 10


# ---- Redis -------------------------------------------------------------------------


@needs_redis
def test_redis_limit_change_keeps_usage(redis_server, prefix):
    with Limiter(redis_server.url, key_prefix=prefix, deny_cache=False, failure_mode="error") as lim:
        # fixed windows of a day: no window boundary falls within the test
        # (unless it starts in the day's last seconds; then the count resets)
        small, big = Policy(100, "1d", "fixed_window"), Policy(1000, "1d", "fixed_window")
        got = used_then_raised(lim, "pos", small, big)
        assert got in (940, 1000)
        named_small = Policy(100, "1d", name="daily")
        named_big = Policy(1000, "1d", name="daily")
        other = Policy(1000, "1h", name="hourly")
        for _ in range(60):
            assert lim.check("named", named_small).allowed
        # the same name at position 1 of another list: the same state
        # (GCRA keeps the used share of the day: 60% of 1000)
        assert 399 <= lim.check("named", named_big, other, cost=0).remaining <= 400
        d = lim.check("named", other, named_big, cost=0)
        assert d.policy_index == 1 and 399 <= d.remaining <= 400
        with pytest.raises(InvalidArgument):
            lim.check("named", named_small, named_big)


@needs_redis
def test_redis_keys_lists_the_given_identities(redis_server, prefix):
    with Limiter(redis_server.url, key_prefix=prefix, deny_cache=False, failure_mode="error") as lim:
        daily = Policy(100, "1d", name="daily")
        burst = Policy(5, "1h")  # unnamed: position 1 below
        lim.check("a", daily, burst)
        lim.check("b", daily)
        lim.check("c", Policy(3, "1h", name="other"))

        states = sorted(lim.keys([daily, burst]), key=lambda s: (s.key, s.policy_index))
        assert all(isinstance(s, KeyState) for s in states)
        assert [(s.key, s.policy_index) for s in states] == [("a", 0), ("a", 1), ("b", 0)]
        assert states[0].policy is daily and states[0].policy.name == "daily"
        assert states[1].policy is burst and states[1].policy.name is None
        assert states[0].remaining == 99 and states[1].remaining == 4
        key, policy, remaining, reset_after, index = states[2]
        assert (key, policy, remaining, index) == ("b", daily, 99, 0) and reset_after > 0

        # a raised limit is listed with the list's policy: usage kept
        bigger = Policy(1000, "1d", name="daily")
        (b,) = [s for s in lim.keys(bigger) if s.key == "b"]
        assert b.policy is bigger and 989 <= b.remaining <= 990
        # one Policy, or a tuple, is a list of one
        assert {s.key for s in lim.keys(daily)} == {"a", "b"}
        assert {s.key for s in lim.keys((Policy(3, "1h", name="other"),))} == {"c"}
        # the unnamed state of "a" is position 1's: a list of one skips it
        assert {(s.key, s.policy_index) for s in lim.keys([burst])} == set()


def test_keys_argument_errors():
    with Limiter() as lim:
        p = Policy(1, "1s")
        with pytest.raises(TypeError, match="needs the policies"):
            lim.keys()  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="a tollgate.Policy or a list"):
            lim.keys("1/s")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="index 1"):
            lim.keys([p, "x"])  # type: ignore[list-item]
        with pytest.raises(InvalidArgument) as info:
            lim.keys([])
        assert info.value.code == "RL_E_INVALID_ARG"
        with pytest.raises(InvalidArgument):
            lim.keys([p] * 17)
