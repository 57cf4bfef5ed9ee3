"""tollgate.Policy: periods, validation, immutability, equality."""

from __future__ import annotations

import copy
import datetime
import pickle

import pytest

import tollgate
from tollgate import InvalidArgument, Policy


@pytest.mark.parametrize(
    "period, ms",
    [
        (1, 1000),
        (60, 60_000),
        (0.5, 500),
        (0.001, 1),
        (2.25, 2250),
        ("500ms", 500),
        ("1s", 1000),
        ("1.5s", 1500),
        ("15m", 900_000),
        ("1h", 3_600_000),
        ("1d", 86_400_000),
        (" 2 h ", 7_200_000),
        ("0.5m", 30_000),
        (datetime.timedelta(minutes=5), 300_000),
        (datetime.timedelta(milliseconds=250), 250),
    ],
)
def test_period_forms(period, ms):
    p = Policy(10, period)
    assert p.period_ms == ms
    assert p.period == ms / 1000


def test_fields_and_defaults():
    p = Policy(100, "1h")
    assert (p.limit, p.period, p.period_ms, p.algorithm, p.burst) == (100, 3600.0, 3_600_000, "gcra", None)
    q = Policy(limit=5, period=2, algorithm="token_bucket", burst=10)
    assert (q.algorithm, q.burst) == ("token_bucket", 10)
    for alg in ("gcra", "token_bucket", "fixed_window", "sliding_window"):
        assert Policy(1, 1, alg).algorithm == alg


def test_repr_round_trips():
    for p in (
        Policy(100, "1h"),
        Policy(5, 1.5, "token_bucket", burst=10),
        Policy(7, "250ms", "sliding_window"),
        Policy(3, "1d", "fixed_window"),
    ):
        assert eval(repr(p), {"Policy": Policy}) == p
    assert repr(Policy(100, 3600)) == "Policy(100, '1h')"
    assert repr(Policy(5, 1.5, burst=2)) == "Policy(5, '1500ms', burst=2)"


def test_immutable_hashable_comparable():
    p = Policy(100, "1h")
    with pytest.raises(AttributeError):
        p.limit = 5  # type: ignore[misc]
    with pytest.raises(AttributeError):
        p.anything = 1  # type: ignore[attr-defined]
    assert p == Policy(100, 3600)
    assert p != Policy(100, 3600, "token_bucket")
    assert p != Policy(101, 3600)
    assert p != "Policy(100, '1h')"
    assert len({p, Policy(100, "60m"), Policy(100, "1d")}) == 2
    assert {p: 1}[Policy(100, datetime.timedelta(hours=1))] == 1


def test_pickle_and_copy():
    for p in (Policy(100, "1h"), Policy(5, 2, "token_bucket", 9), Policy(3, 1, "fixed_window")):
        assert pickle.loads(pickle.dumps(p)) == p
        assert copy.deepcopy(p) == p


@pytest.mark.parametrize(
    "args, kwargs, code",
    [
        ((0, 1), {}, "RL_E_POLICY"),
        ((-5, 1), {}, "RL_E_POLICY"),
        ((1, 0), {}, "RL_E_POLICY"),
        ((1, -1), {}, "RL_E_POLICY"),
        ((1, 0.0), {}, "RL_E_POLICY"),
        ((1, float("nan")), {}, "RL_E_POLICY"),
        ((1, float("inf")), {}, "RL_E_POLICY"),
        ((1, 0.0001), {}, "RL_E_POLICY"),  # not whole milliseconds
        ((1, "0.0001s"), {}, "RL_E_POLICY"),
        ((1, "1 fortnight"), {}, "RL_E_POLICY"),
        ((1, "1"), {}, "RL_E_POLICY"),  # a unit is required
        ((1, ""), {}, "RL_E_POLICY"),
        ((1, "s"), {}, "RL_E_POLICY"),
        ((1, "1.2.3s"), {}, "RL_E_POLICY"),
        ((1, "-1s"), {}, "RL_E_POLICY"),
        ((1, "0s"), {}, "RL_E_POLICY"),
        ((1, datetime.timedelta(0)), {}, "RL_E_POLICY"),
        ((1, datetime.timedelta(microseconds=1500)), {}, "RL_E_POLICY"),
        ((1, 1, "leaky"), {}, "RL_E_POLICY"),
        ((1, 1, "GCRA"), {}, "RL_E_POLICY"),
        ((1, 1, "fixed_window"), {"burst": 3}, "RL_E_POLICY"),
        ((1, 1, "sliding_window"), {"burst": 3}, "RL_E_POLICY"),
        ((1, 1), {"burst": 0}, "RL_E_POLICY"),
        ((1, 1), {"burst": -1}, "RL_E_POLICY"),
        ((2**41, 1), {}, "RL_E_OVERFLOW"),
        ((1, 2**41), {}, "RL_E_OVERFLOW"),
        ((1, 1), {"burst": 2**41}, "RL_E_OVERFLOW"),
        ((2**70, 1), {}, "RL_E_OVERFLOW"),
        ((1, "99999999999999999999d"), {}, "RL_E_OVERFLOW"),
    ],
)
def test_invalid_values(args, kwargs, code):
    with pytest.raises(InvalidArgument) as info:
        Policy(*args, **kwargs)
    assert info.value.code == code
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, tollgate.Error)
    assert str(info.value)  # a message saying what is wrong


@pytest.mark.parametrize(
    "args, kwargs, needle",
    [
        (("10", 1), {}, "limit must be an int, not str"),
        ((10.0, 1), {}, "limit must be an int, not float"),
        ((True, 1), {}, "limit must be an int, not bool"),
        ((None, 1), {}, "limit must be an int, not NoneType"),
        ((10, None), {}, "period must be"),
        ((10, [1]), {}, "period must be"),
        ((10, True), {}, "not bool"),
        ((10, 1, 3), {}, "algorithm must be a str, not int"),
        ((10, 1), {"burst": "5"}, "burst must be an int, not str"),
        ((10, 1), {"burst": 2.0}, "burst must be an int, not float"),
    ],
)
def test_wrong_types(args, kwargs, needle):
    with pytest.raises(TypeError) as info:
        Policy(*args, **kwargs)
    assert needle in str(info.value)


def test_missing_arguments():
    with pytest.raises(TypeError):
        Policy(10)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Policy(10, 1, "gcra", 5, 6)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Policy(10, 1, color="red")  # type: ignore[call-arg]


def test_index_like_integers():
    class Seven:
        def __index__(self) -> int:
            return 7

    assert Policy(Seven(), Seven()).limit == 7  # type: ignore[arg-type]
    assert Policy(Seven(), Seven()).period_ms == 7000  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("100/h", Policy(100, "1h")),
        ("100 per hour", Policy(100, "1h")),
        ("100 per 15m", Policy(100, "15m")),
        ("10/1.5s burst=20", Policy(10, "1.5s", burst=20)),
        ("10/s, burst=20, token_bucket", Policy(10, 1, "token_bucket", burst=20)),
        ("5000/d sliding_window", Policy(5000, "1d", "sliding_window")),
        ("3/250ms algorithm=fixed_window", Policy(3, "250ms", "fixed_window")),
    ],
)
def test_parse(text, expected):
    p = Policy.parse(text)
    assert p == expected
    assert isinstance(p, Policy)
    assert repr(p) == repr(expected)


@pytest.mark.parametrize(
    "text, code, offset",
    [
        ("100", "RL_E_POLICY", 3),
        ("100/3fortnights", "RL_E_POLICY", 5),
        ("100/h leaky", "RL_E_POLICY", 6),
        ("100/h fixed_window burst=5", "RL_E_POLICY", 19),
        ("0/h", "RL_E_POLICY", 0),
        ("2000000000000/h", "RL_E_OVERFLOW", 0),
    ],
)
def test_parse_errors_name_the_offset(text, code, offset):
    with pytest.raises(InvalidArgument) as info:
        Policy.parse(text)
    assert info.value.code == code
    assert f"at byte {offset}" in str(info.value)


def test_parse_needs_a_str():
    with pytest.raises(TypeError):
        Policy.parse(100)  # type: ignore[arg-type]


def test_policies_outlive_and_predecease_limiters():
    # A Policy holds its own reference to the library's handle: the limiter
    # may go first, or the policy may.
    lim = tollgate.Limiter()
    p = Policy.parse("2/h")
    assert lim.check("k", p).allowed
    lim.close()
    del lim
    assert p.limit == 2
    lim = tollgate.Limiter()
    assert lim.check("k", Policy.parse("2/h")).remaining == 1
    assert lim.check("k", Policy(2, "1h")).remaining == 0  # the same state
    lim.close()
