"""tollgate's metrics for Prometheus, through ``prometheus_client``
(``pip install tollgate[prometheus]``).

    >>> from prometheus_client import REGISTRY, start_http_server
    >>> from tollgate.prometheus import TollgateCollector
    >>> REGISTRY.register(TollgateCollector(limiter))
    >>> start_http_server(9100)

Each scrape reads one snapshot of the limiter (:meth:`tollgate.Limiter.metrics`,
no I/O) and exposes every series under the library's own name, labels and
type (docs/api-c.md, ``rl_metrics_read``): ``tollgate_checks_total{policy,
decision,source}``, ``tollgate_store_round_trip_seconds`` (a histogram per
Redis node), ... Counters keep their ``_total`` name exactly (prometheus_client
adds that suffix itself, so a family is declared without it).

Several limiters in one registry: give them to one collector by name,
``TollgateCollector({"api": a, "jobs": b})``; each name becomes the value of
a ``limiter`` label on its limiter's series, and each metric is exposed once
with the samples of all of them (two collectors would expose the same
metric twice, which the registry refuses). ``TollgateCollector(limiter,
name="api")`` labels a single limiter the same way.

A closed limiter has no series: the collector stays registered and reports
nothing for it.
"""

from __future__ import annotations

from typing import Dict, Iterable, Iterator, List, Optional

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    UnknownMetricFamily,
)
from prometheus_client.utils import floatToGoString

from . import _metrics
from ._metrics import Limiters, MetricSample

__all__ = ["TollgateCollector"]


def _family(s: MetricSample, labelnames: List[str]) -> Metric:
    if s.type == "histogram":
        return HistogramMetricFamily(s.name, s.help, labels=labelnames)
    if s.type == "gauge":
        return GaugeMetricFamily(s.name, s.help, labels=labelnames)
    if s.name.endswith("_total"):
        # Declared as "tollgate_checks"; its samples are "tollgate_checks_total".
        return CounterMetricFamily(s.name, s.help, labels=labelnames)
    # A counter not named *_total (none is, today) would be renamed by
    # CounterMetricFamily: exposed untyped, under its own name.
    return UnknownMetricFamily(s.name, s.help, labels=labelnames)


def _add(family: Metric, s: MetricSample, values: List[str]) -> None:
    if isinstance(family, HistogramMetricFamily):
        family.add_metric(values, [(floatToGoString(b), n) for b, n in s.buckets], s.sum)
    else:
        family.add_metric(values, s.value)  # type: ignore[attr-defined]


class TollgateCollector:
    """A ``prometheus_client`` collector of one limiter's metrics, or of
    several by name (the module's docstring says how).

    ``limiter``  a :class:`tollgate.Limiter`, or a mapping of names to
                 limiters (each name the value of their ``limiter`` label)
    ``name``     with one limiter: the value of a ``limiter`` label on its
                 series (None: no such label)

    Register it with ``registry.register(collector)``; each scrape
    (``collect()``) reads one snapshot of each limiter.
    """

    def __init__(self, limiter: Limiters, name: Optional[str] = None) -> None:
        self._sources = _metrics.sources(limiter, name)

    def collect(self) -> Iterator[Metric]:
        """The metric families of one snapshot of each limiter."""
        families: Dict[str, Metric] = {}
        labelnames: Dict[str, List[str]] = {}
        for extra, s in _metrics.read(self._sources):
            labels = dict(extra, **s.labels)
            family = families.get(s.name)
            if family is None:
                labelnames[s.name] = list(labels)
                family = families[s.name] = _family(s, labelnames[s.name])
            _add(family, s, [labels.get(k, "") for k in labelnames[s.name]])
        return iter(families.values())

    def describe(self) -> Iterable[Metric]:
        """The families the library can report (empty), so that a registry
        refuses a second collector of the same names: registering reads no
        snapshot, and a series that appears only with traffic (a policy's
        first check) is known from the start."""
        out: List[Metric] = []
        for name, (kind, text) in _metrics.SERIES.items():
            out.append(_family(MetricSample(kind, name, text, {}, 0.0, [], 0, 0.0), []))
        return out
