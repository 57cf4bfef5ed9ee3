"""The metrics snapshot in Python: :class:`MetricSample` (what
:meth:`tollgate.Limiter.metrics` returns), the series the library exports,
and what the exporters (tollgate.prometheus, tollgate.opentelemetry) share.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Iterator, List, Literal, Mapping, Optional, Tuple, Union

from ._errors import TollgateConnectionError
from ._native import Limiter

MetricType = Literal["counter", "gauge", "histogram"]


@dataclasses.dataclass(frozen=True)
class MetricSample:
    """One series of a limiter's metrics (:meth:`tollgate.Limiter.metrics`),
    named as Prometheus names it (docs/api-c.md, ``rl_metrics_read``).

    ``type``     "counter" (only grows while the limiter lives), "gauge"
                 (goes up and down) or "histogram"
    ``name``     e.g. "tollgate_checks_total" (every counter's ends in
                 ``_total``)
    ``help``     one line that says what it counts
    ``labels``   the series' labels, e.g. ``{"policy": "api", "decision":
                 "allowed", "source": "store"}``; ``{"node": "host:port"}``
                 for a Redis node's series; ``{}`` for none
    ``value``    a counter's or gauge's value; 0.0 for a histogram
    ``buckets``  a histogram's ``(upper bound in seconds, observations at or
                 below it)`` pairs, cumulative like Prometheus's ``le``
                 buckets, increasing, the last bound ``math.inf`` (its count
                 is ``count``); ``[]`` for the other types
    ``count``    a histogram's observations (0 for the other types)
    ``sum``      their sum in seconds (0.0 for the other types)
    """

    type: MetricType
    name: str
    help: str
    labels: Dict[str, str]
    value: float
    buckets: List[Tuple[float, int]]
    count: int
    sum: float


#: The series the library exports (docs/api-c.md, rl_metrics_read; each
#: appears once the limiter has what it counts), by name: the type, and a
#: description for an exporter that declares a series before the library
#: reports it.
SERIES: Dict[str, Tuple[MetricType, str]] = {
    "tollgate_checks_total": ("counter", "Decisions given, by the reported policy's name, the decision and the path that answered"),
    "tollgate_shadow_denials_total": ("counter", "Checks allowed only because shadow mode did not enforce a denial"),
    "tollgate_check_errors_total": ("counter", "Calls that failed with an error instead of a decision"),
    "tollgate_memory_keys": ("gauge", "Keys the memory store holds"),
    "tollgate_memory_evictions_total": ("counter", "Keys evicted to stay within max_keys"),
    "tollgate_store_errors_total": ("counter", "Store calls that failed (each then answered by the failure mode)"),
    "tollgate_async_pending": ("gauge", "Async checks waiting for the store (at most max_async)"),
    "tollgate_async_refused_total": (
        "counter",
        "Async checks refused at once because max_async were already waiting (RL_E_BUSY)",
    ),
    "tollgate_store_up": ("gauge", "1 while a connection to the node is ready, else 0"),
    "tollgate_store_primary": ("gauge", "1 if the node serves the limiter's keys (a primary), else 0"),
    "tollgate_store_in_flight": ("gauge", "Commands sent to the node and awaiting its reply"),
    "tollgate_store_connection_failures_total": ("counter", "Connections to the node lost or refused"),
    "tollgate_store_reconnects_total": ("counter", "Connections to the node re-established"),
    "tollgate_store_round_trip_seconds": ("histogram", "Round trips of the limiter's commands to the node, from sending to reading the reply"),
    "tollgate_cluster_redirections_total": ("counter", "MOVED and ASK redirections followed"),
    "tollgate_cluster_slot_map_refreshes_total": ("counter", "Slot maps read from the cluster"),
    "tollgate_cluster_slot_map_age_seconds": ("gauge", "Age of the slot map in use"),
    "tollgate_sentinel_master_switches_total": ("counter", "Moves to another master after a failover"),
}

#: The gauges that count things (they add up across nodes and limiters):
#: OpenTelemetry's up-down counters. The other gauges are states.
ADDITIVE_GAUGES = frozenset(("tollgate_memory_keys", "tollgate_store_in_flight", "tollgate_async_pending"))

#: The label that tells limiters apart when an exporter is given a name or
#: several limiters.
LIMITER_LABEL = "limiter"

#: What an exporter takes: one limiter, or several by name.
Limiters = Union[Limiter, Mapping[str, Limiter]]
#: One limiter of an exporter, with the labels it adds to its series.
Source = Tuple[Dict[str, str], Limiter]


def sources(limiter: Limiters, name: Optional[str]) -> List[Source]:
    """The limiters an exporter reads, each with its extra labels: one
    limiter (``name``: a ``limiter`` label), or a mapping of names to
    limiters (each name its ``limiter`` label)."""
    if isinstance(limiter, Mapping):
        if name is not None:
            raise TypeError("name goes with one limiter: a mapping names its limiters by its keys")
        if not limiter:
            raise ValueError("no limiters: the mapping is empty")
        for key, lim in limiter.items():
            _check(lim, key)
        return [({LIMITER_LABEL: key}, lim) for key, lim in limiter.items()]
    _check(limiter, name)
    return [({} if name is None else {LIMITER_LABEL: name}, limiter)]


def _check(limiter: object, name: object) -> None:
    if not isinstance(limiter, Limiter):
        raise TypeError(
            "expected a tollgate.Limiter or a mapping of names to limiters, not %s" % type(limiter).__name__
        )
    if name is not None and not isinstance(name, str):
        raise TypeError("a limiter's name must be a str, not %s" % type(name).__name__)


def read(limiters: List[Source]) -> Iterator[Tuple[Dict[str, str], MetricSample]]:
    """One snapshot of each limiter, series by series, with the limiter's
    extra labels. A closed limiter has no series (its exporter stays
    registered and reports nothing for it)."""
    for extra, lim in limiters:
        try:
            samples = lim.metrics()
        except TollgateConnectionError as e:
            if e.code != "RL_E_CLOSED":
                raise
            continue
        for s in samples:
            yield extra, s
