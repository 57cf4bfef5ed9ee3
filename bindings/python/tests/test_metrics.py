"""Metrics: Limiter.metrics() (rl_metrics_read walked by the extension), the
`metrics` option, and the two exporters read the way their users read them:
tollgate.prometheus scraped from a real prometheus_client CollectorRegistry
(get_sample_value, and the text exposition parsed back), and
tollgate.opentelemetry collected by the OpenTelemetry SDK's
InMemoryMetricReader. Known traffic on the memory store and on a real Redis
(the conftest's redis-server); the values are exact.
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from typing import Any, Dict, FrozenSet, Iterator, List, Optional, Tuple

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import Gauge, InMemoryMetricReader, Sum
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import tollgate
from tollgate import InvalidArgument, Limiter, MetricSample, Policy
from tollgate.opentelemetry import TollgateInstruments
from tollgate.prometheus import TollgateCollector

from conftest import RedisServer

API = "3/m name=api"
TRIAL = "1/m name=trial shadow"


class Traffic:
    """A limiter that has seen the known traffic: policy "api" (3/m) 3
    allowed and 2 denied, the shadow policy "trial" (1/m) 2 allowed of which
    1 a would-be denial, the unnamed policy ("default") 1 allowed, and one
    call that failed (an empty key). `node` is the Redis node's label."""

    def __init__(self, lim: Limiter, node: Optional[str]) -> None:
        self.lim = lim
        self.node = node
        api, trial, unnamed = Policy.parse(API), Policy.parse(TRIAL), Policy(100, "1m")
        got = [lim.check("user:1", api).allowed for _ in range(5)]
        assert got == [True, True, True, False, False], got
        shadow = [lim.check("user:1", trial) for _ in range(2)]
        assert [d.allowed for d in shadow] == [True, True] and [d.shadow for d in shadow] == [False, True]
        assert lim.check("user:2", unnamed).allowed
        with pytest.raises(InvalidArgument):
            lim.check("", api)

    @property
    def redis(self) -> bool:
        return self.node is not None


@pytest.fixture(params=["memory", "redis"])
def traffic(request: pytest.FixtureRequest) -> Iterator[Traffic]:
    if request.param == "memory":
        lim = Limiter()
        node = None
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        # No deny cache: every check reaches Redis (source "store").
        lim = Limiter(server.url, key_prefix=request.getfixturevalue("prefix"), failure_mode="error",
                      deny_cache=False, timeout_ms=5000)
        node = "127.0.0.1:%d" % server.port
    try:
        yield Traffic(lim, node)
    finally:
        lim.close()


def find(samples: List[MetricSample], name: str, **labels: str) -> Optional[MetricSample]:
    hits = [s for s in samples if s.name == name and s.labels == labels]
    assert len(hits) <= 1, hits  # every series once
    return hits[0] if hits else None


def checks(decision: str, policy: str, source: str = "store") -> Dict[str, str]:
    return {"policy": policy, "decision": decision, "source": source}


# What every reader of the snapshot must find after the known traffic:
# (name, labels) -> value.
EXPECTED_DECISIONS = {
    ("tollgate_checks_total", frozenset(checks("allowed", "api").items())): 3,
    ("tollgate_checks_total", frozenset(checks("denied", "api").items())): 2,
    ("tollgate_checks_total", frozenset(checks("allowed", "trial").items())): 2,
    ("tollgate_checks_total", frozenset(checks("allowed", "default").items())): 1,
    ("tollgate_shadow_denials_total", frozenset({"policy": "trial"}.items())): 1,
    ("tollgate_check_errors_total", frozenset()): 1,
}
# The checks that reached the store: each one round trip at least.
FROM_STORE = 3 + 2 + 2 + 1


# ---- Limiter.metrics() -------------------------------------------------------


def test_snapshot_after_known_traffic(traffic: Traffic) -> None:
    samples = traffic.lim.metrics()
    assert all(type(s) is MetricSample for s in samples)
    for (name, labels), want in EXPECTED_DECISIONS.items():
        s = find(samples, name, **dict(labels))
        assert s is not None and s.value == want, (name, labels, s)
        assert s.type == "counter" and s.help and s.buckets == [] and s.count == 0 and s.sum == 0.0
    # A shadow policy never denies; nothing else was decided.
    assert find(samples, "tollgate_checks_total", **checks("denied", "trial")) is None
    assert sorted(s.value for s in samples if s.name == "tollgate_checks_total") == [1, 2, 2, 3]
    assert all(s.name.startswith("tollgate_") for s in samples)
    assert all(s.name.endswith("_total") for s in samples if s.type == "counter")

    if not traffic.redis:
        keys = find(samples, "tollgate_memory_keys")
        assert keys is not None and keys.type == "gauge"
        assert keys.value == traffic.lim.health()["live_keys"] > 0
        assert find(samples, "tollgate_memory_evictions_total").value == 0  # type: ignore[union-attr]
        assert not [s for s in samples if s.name.startswith("tollgate_store_")]
        return

    node = traffic.node
    assert node is not None
    assert find(samples, "tollgate_memory_keys") is None
    for name, want in (("tollgate_store_up", 1), ("tollgate_store_primary", 1), ("tollgate_store_in_flight", 0)):
        s = find(samples, name, node=node)
        assert s is not None and s.type == "gauge" and s.value == want, (name, s)
    for name in ("tollgate_store_connection_failures_total", "tollgate_store_reconnects_total"):
        s = find(samples, name, node=node)
        assert s is not None and s.type == "counter" and s.value == 0, (name, s)
    assert find(samples, "tollgate_store_errors_total").value == 0  # type: ignore[union-attr]

    rtt = find(samples, "tollgate_store_round_trip_seconds", node=node)
    assert rtt is not None and rtt.type == "histogram" and rtt.value == 0.0
    bounds = [b for b, _ in rtt.buckets]
    assert len(bounds) == 17 and bounds[0] == pytest.approx(25e-6) and bounds[-2] == pytest.approx(2.5)
    assert bounds[-1] == math.inf and bounds == sorted(bounds)
    counts = [n for _, n in rtt.buckets]
    assert counts == sorted(counts)  # cumulative
    assert counts[-1] == rtt.count >= FROM_STORE
    assert rtt.sum > 0


def test_declared_series_match_what_the_library_reports(traffic: Traffic) -> None:
    # An exporter declares a series from tollgate._metrics.SERIES before the
    # library reports it: its type and description must be the library's.
    from tollgate._metrics import SERIES

    down = tollgate.Limiter(
        "redis://127.0.0.1:1", timeout_ms=50, connect_timeout_ms=50, failure_mode="open"
    )
    try:
        assert down.check("k", tollgate.Policy(5, "1m")).source == "fail_open"
        samples = traffic.lim.metrics() + down.metrics()
    finally:
        down.close()
    names = {s.name for s in samples}
    assert {"tollgate_checks_total", "tollgate_store_errors_total"} <= names
    for s in samples:
        assert SERIES[s.name] == (s.type, s.help), s.name


def test_metric_sample_is_a_frozen_value() -> None:
    s = MetricSample("counter", "tollgate_x_total", "help", {"a": "b"}, 1.0, [], 0, 0.0)
    assert s == MetricSample("counter", "tollgate_x_total", "help", {"a": "b"}, 1.0, [], 0, 0.0)
    assert MetricSample.__module__ == "tollgate" and "MetricSample" in tollgate.__all__
    with pytest.raises(AttributeError):
        s.value = 2.0  # type: ignore[misc]


def test_metrics_option() -> None:
    api = Policy.parse(API)
    for option in ({}, {"metrics": True}, {"metrics": None}):
        with Limiter(**option) as lim:
            lim.check("k", api)
            assert find(lim.metrics(), "tollgate_checks_total", **checks("allowed", "api")) is not None, option
    with Limiter(metrics=False) as lim:
        lim.check("k", Policy.parse("1/m name=api shadow"))
        lim.check("k", Policy.parse("1/m name=api shadow"))
        names = {s.name for s in lim.metrics()}
        # Decisions are not counted per label; the other series remain.
        assert "tollgate_checks_total" not in names and "tollgate_shadow_denials_total" not in names
        assert {"tollgate_check_errors_total", "tollgate_memory_keys"} <= names
        registry = CollectorRegistry()
        registry.register(TollgateCollector(lim))
        assert "tollgate_checks_total" not in generate_latest(registry).decode()
        assert registry.get_sample_value("tollgate_memory_keys") == 1
    with pytest.raises(TypeError, match="^metrics must be a bool, not str$"):
        Limiter(metrics="off")
    with pytest.raises(TypeError, match="^metrics must be a bool, not int$"):
        Limiter(metrics=0)


def test_metrics_of_a_closed_limiter() -> None:
    lim = Limiter()
    lim.close()
    with pytest.raises(tollgate.TollgateConnectionError) as info:
        lim.metrics()
    assert info.value.code == "RL_E_CLOSED"


# ---- Prometheus ----------------------------------------------------------------


def exposed_names(text: str) -> Dict[str, str]:
    """Each metric's name and type as the text exposition declares them."""
    out = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name not in out, "%s declared twice" % name
            out[name] = kind
    return out


def test_prometheus_scrape(traffic: Traffic) -> None:
    registry = CollectorRegistry()
    registry.register(TollgateCollector(traffic.lim))
    get = registry.get_sample_value
    for (name, labels), want in EXPECTED_DECISIONS.items():
        assert get(name, dict(labels)) == want, (name, labels)
    assert get("tollgate_checks_total", checks("denied", "trial")) is None

    text = generate_latest(registry).decode()
    # The exposed names are the library's, exactly (no second _total), with
    # their types and help.
    core = {s.name: s.type for s in traffic.lim.metrics()}
    assert exposed_names(text) == core
    assert "_total_total" not in text
    assert "# HELP tollgate_checks_total Decisions given" in text
    assert 'tollgate_checks_total{decision="allowed",policy="api",source="store"} 3.0' in text
    # The text parses back into the same families and values.
    parsed = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            parsed[(sample.name, frozenset(sample.labels.items()))] = sample.value
    for key, want in EXPECTED_DECISIONS.items():
        assert parsed[key] == want, key

    if not traffic.redis:
        assert get("tollgate_memory_keys") == traffic.lim.health()["live_keys"]
        assert get("tollgate_memory_evictions_total") == 0
        return
    node = {"node": traffic.node}
    assert get("tollgate_store_up", node) == 1 and get("tollgate_store_primary", node) == 1
    assert get("tollgate_store_in_flight", node) == 0
    assert get("tollgate_store_errors_total") == 0
    assert get("tollgate_store_connection_failures_total", node) == 0
    # The histogram: le buckets as Prometheus writes them, +Inf == _count.
    count = get("tollgate_store_round_trip_seconds_count", node)
    assert count is not None and count >= FROM_STORE
    assert get("tollgate_store_round_trip_seconds_bucket", dict(node, le="+Inf")) == count
    assert get("tollgate_store_round_trip_seconds_bucket", dict(node, le="2.5e-05")) is not None
    assert get("tollgate_store_round_trip_seconds_bucket", dict(node, le="2.5")) <= count  # type: ignore[operator]
    assert get("tollgate_store_round_trip_seconds_sum", node) > 0  # type: ignore[operator]
    assert "# TYPE tollgate_store_round_trip_seconds histogram" in text
    buckets = [(float(labels["le"]), v) for (name, labels_set), v in parsed.items()
               if name == "tollgate_store_round_trip_seconds_bucket" for labels in [dict(labels_set)]]
    assert len(buckets) == 17
    values = [v for _, v in sorted(buckets)]
    assert values == sorted(values) and values[-1] == count


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> List[Limiter]:
    """The limiters whose metrics() was called, one entry a call."""
    called: List[Limiter] = []
    real = Limiter.metrics

    def counting(self: Limiter) -> List[MetricSample]:
        called.append(self)
        return real(self)

    monkeypatch.setattr(Limiter, "metrics", counting)
    return called


def test_prometheus_one_snapshot_per_scrape(reads: List[Limiter]) -> None:
    with Limiter() as lim:
        registry = CollectorRegistry()
        registry.register(TollgateCollector(lim))
        assert reads == []  # registering reads nothing (describe())
        lim.check("k", Policy.parse(API))
        generate_latest(registry)
        assert reads == [lim]
        generate_latest(registry)
        assert reads == [lim, lim]


def test_prometheus_several_limiters() -> None:
    api = Policy.parse(API)
    with Limiter() as a, Limiter() as b:
        for _ in range(2):
            a.check("k", api)
        b.check("k", api)
        registry = CollectorRegistry()
        registry.register(TollgateCollector({"a": a, "b": b}))
        get = registry.get_sample_value
        assert get("tollgate_checks_total", dict(checks("allowed", "api"), limiter="a")) == 2
        assert get("tollgate_checks_total", dict(checks("allowed", "api"), limiter="b")) == 1
        assert get("tollgate_memory_keys", {"limiter": "b"}) == 1
        text = generate_latest(registry).decode()
        assert list(exposed_names(text)).count("tollgate_checks_total") == 1
        # A second collector of the same series is refused by the registry.
        with pytest.raises(ValueError, match="Duplicated timeseries"):
            registry.register(TollgateCollector(a, name="again"))
        # One named limiter.
        one = CollectorRegistry()
        one.register(TollgateCollector(b, name="jobs"))
        assert one.get_sample_value("tollgate_checks_total", dict(checks("allowed", "api"), limiter="jobs")) == 1
        assert one.get_sample_value("tollgate_checks_total", checks("allowed", "api")) is None

        # A closed limiter has no series; the others go on.
        b.close()
        assert get("tollgate_memory_keys", {"limiter": "b"}) is None
        assert get("tollgate_memory_keys", {"limiter": "a"}) == 1
        assert "limiter=\"b\"" not in generate_latest(registry).decode()


def test_exporters_refuse_bad_arguments(otel: "Otel") -> None:
    makers = (
        lambda limiter, **kw: TollgateCollector(limiter, **kw),
        lambda limiter, **kw: TollgateInstruments(limiter, otel.meter, **kw),
    )
    with Limiter() as lim:
        for make in makers:
            with pytest.raises(TypeError, match="^expected a tollgate.Limiter or a mapping"):
                make("redis://x")
            with pytest.raises(TypeError, match="^expected a tollgate.Limiter or a mapping"):
                make({"a": "redis://x"})
            with pytest.raises(TypeError, match="^name goes with one limiter"):
                make({"a": lim}, name="b")
            with pytest.raises(TypeError, match="^a limiter's name must be a str, not int$"):
                make(lim, name=3)
            with pytest.raises(TypeError, match="^a limiter's name must be a str, not int$"):
                make({3: lim})
            with pytest.raises(ValueError, match="^no limiters"):
                make({})


# ---- OpenTelemetry -------------------------------------------------------------


class Otel:
    """An SDK MeterProvider with an InMemoryMetricReader."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader])
        self.meter = self.provider.get_meter("tollgate-test")

    def collect(self) -> Dict[Tuple[str, FrozenSet[Tuple[str, Any]]], Tuple[str, Any]]:
        """(name, attributes) -> (kind, value); kind "counter" (a monotonic
        sum), "updown" (a non-monotonic sum) or "gauge"."""
        out: Dict[Tuple[str, FrozenSet[Tuple[str, Any]]], Tuple[str, Any]] = {}
        data = self.reader.get_metrics_data()
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if isinstance(m.data, Sum):
                        kind = "counter" if m.data.is_monotonic else "updown"
                    else:
                        assert isinstance(m.data, Gauge), m
                        kind = "gauge"
                    for p in m.data.data_points:
                        key = (m.name, frozenset(p.attributes.items()))
                        assert key not in out, key
                        out[key] = (kind, p.value)
        return out

    def close(self) -> None:
        self.provider.shutdown()


@pytest.fixture
def otel() -> Iterator[Otel]:
    o = Otel()
    yield o
    o.close()


def test_opentelemetry_collection(traffic: Traffic, otel: Otel) -> None:
    TollgateInstruments(traffic.lim, otel.meter)
    got = otel.collect()
    for key, want in EXPECTED_DECISIONS.items():
        assert got[key] == ("counter", want), key
        assert type(got[key][1]) is int, key  # counts are ints
    assert ("tollgate_checks_total", frozenset(checks("denied", "trial").items())) not in got
    none: FrozenSet[Tuple[str, Any]] = frozenset()
    if not traffic.redis:
        assert got[("tollgate_memory_keys", none)] == ("updown", traffic.lim.health()["live_keys"])
        assert got[("tollgate_memory_evictions_total", none)] == ("counter", 0)
        assert not [k for k in got if k[0].startswith("tollgate_store_")]
        return
    node = frozenset({"node": traffic.node}.items())
    assert got[("tollgate_store_up", node)] == ("gauge", 1.0)
    assert got[("tollgate_store_primary", node)] == ("gauge", 1.0)
    assert got[("tollgate_store_in_flight", node)] == ("updown", 0)
    assert got[("tollgate_store_errors_total", none)] == ("counter", 0)
    assert got[("tollgate_async_pending", none)] == ("updown", 0)
    assert got[("tollgate_async_refused_total", none)] == ("counter", 0)
    assert got[("tollgate_store_connection_failures_total", node)] == ("counter", 0)
    # The histogram as its count and sum, the same as the snapshot's.
    kind, count = got[("tollgate_store_round_trip_seconds_count", node)]
    assert kind == "counter" and count >= FROM_STORE
    kind, total = got[("tollgate_store_round_trip_seconds_sum", node)]
    assert kind == "counter" and total > 0
    rtt = find(traffic.lim.metrics(), "tollgate_store_round_trip_seconds", node=traffic.node)  # type: ignore[arg-type]
    assert rtt is not None and rtt.count >= count and rtt.sum >= total
    assert not [k for k in got if k[0] == "tollgate_store_round_trip_seconds"]


def test_opentelemetry_instruments_and_units(otel: Otel) -> None:
    with Limiter() as lim:
        made = TollgateInstruments(lim, otel.meter).instruments
        assert set(made) == {
            n for n in tollgate._metrics.SERIES if n != "tollgate_store_round_trip_seconds"
        } | {"tollgate_store_round_trip_seconds_count", "tollgate_store_round_trip_seconds_sum"}
        assert made["tollgate_store_round_trip_seconds_sum"].unit == "s"
        assert made["tollgate_cluster_slot_map_age_seconds"].unit == "s"
        assert made["tollgate_checks_total"].unit == ""
        assert made["tollgate_checks_total"].description.startswith("Decisions given")


def test_opentelemetry_one_snapshot_per_collection(otel: Otel, reads: List[Limiter]) -> None:
    api = Policy.parse(API)
    with Limiter() as lim:
        TollgateInstruments(lim, otel.meter)
        assert reads == [lim]  # the series it has (a newer library's too)
        reads.clear()
        lim.check("k", api)
        key = ("tollgate_checks_total", frozenset(checks("allowed", "api").items()))
        assert otel.collect()[key] == ("counter", 1)
        assert reads == [lim]
        lim.check("k", api)
        assert otel.collect()[key] == ("counter", 2)  # the next collection reads anew
        assert reads == [lim, lim]


def test_opentelemetry_snapshot_per_reader_and_age(reads: List[Limiter], monkeypatch: pytest.MonkeyPatch) -> None:
    # Two readers: each collection (a reader's) calls every callback once,
    # so each reads one snapshot.
    first, second = InMemoryMetricReader(), InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[first, second])
    try:
        with Limiter() as lim:
            TollgateInstruments(lim, provider.get_meter("two-readers"))
            reads.clear()
            first.get_metrics_data()
            second.get_metrics_data()
            first.get_metrics_data()
            assert reads == [lim] * 3
            # A snapshot older than the bound is read again, whichever
            # callback comes.
            monkeypatch.setattr(tollgate.opentelemetry, "_MAX_SNAPSHOT_AGE", -1.0)
            reads.clear()
            first.get_metrics_data()
            assert len(reads) == len(tollgate._metrics.SERIES) + 1  # one instrument more: _count and _sum
    finally:
        provider.shutdown()


def test_opentelemetry_several_limiters(otel: Otel) -> None:
    api = Policy.parse(API)
    with Limiter() as a, Limiter() as b, Limiter() as c:
        a.check("k", api)
        for _ in range(2):
            b.check("k", api)
        for _ in range(3):
            c.check("k", api)
        first = TollgateInstruments({"a": a, "b": b}, otel.meter)
        third = TollgateInstruments(c, otel.meter, name="c")

        def by_limiter() -> Dict[str, Any]:
            """The "limiter" attribute of each api allowed count."""
            out = {}
            for (name, attrs), value in otel.collect().items():
                labels = dict(attrs)
                who = labels.pop("limiter")
                if name == "tollgate_checks_total" and labels == checks("allowed", "api"):
                    out[who] = value
            return out

        assert by_limiter() == {"a": ("counter", 1), "b": ("counter", 2), "c": ("counter", 3)}
        assert third.instruments == first.instruments  # one set per meter
        # The same attributes twice would report the same series.
        with pytest.raises(ValueError, match="limiter='c' is observed on this meter already"):
            TollgateInstruments(a, otel.meter, name="c")
        # Detached: its limiters are no longer observed; the name is free.
        first.detach()
        first.detach()
        assert by_limiter() == {"c": ("counter", 3)}
        TollgateInstruments(a, otel.meter, name="a")
        assert by_limiter() == {"a": ("counter", 1), "c": ("counter", 3)}
        # A closed limiter has no observations.
        c.close()
        assert by_limiter() == {"a": ("counter", 1)}


def test_opentelemetry_unnamed_twice_on_one_meter(otel: Otel) -> None:
    with Limiter() as a, Limiter() as b:
        TollgateInstruments(a, otel.meter)
        with pytest.raises(ValueError, match="a limiter with no name is observed on this meter already"):
            TollgateInstruments(b, otel.meter)


# ---- The optional dependencies ----------------------------------------------------


def test_importing_tollgate_needs_neither_exporter() -> None:
    code = textwrap.dedent(
        """
        import sys
        # Neither is importable: the package and Limiter.metrics() still work.
        for name in ("prometheus_client", "opentelemetry"):
            sys.modules[name] = None
        import tollgate
        with tollgate.Limiter() as lim:
            lim.check("k", tollgate.Policy.parse("1/m name=api"))
            assert any(s.name == "tollgate_checks_total" for s in lim.metrics())
        try:
            import tollgate.prometheus
        except ImportError as e:
            print("prometheus:", e)
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "ok" and "prometheus:" in out.stdout
