"""tollgate's metrics for OpenTelemetry, on ``opentelemetry-api`` alone
(``pip install tollgate[opentelemetry]``; the application brings the SDK and
its exporters).

    >>> from opentelemetry import metrics
    >>> from tollgate.opentelemetry import TollgateInstruments
    >>> TollgateInstruments(limiter, metrics.get_meter("myapp"))

It registers asynchronous instruments on the meter, named as the library
names its series (docs/api-c.md, ``rl_metrics_read``), whose attributes are
the series' labels (``policy``, ``decision``, ``source``, ``node``, ...):

- every counter (``tollgate_checks_total``, ...) as an observable counter;
- the gauges that count things (``tollgate_memory_keys``,
  ``tollgate_store_in_flight``, ``tollgate_async_pending``) as observable
  up-down counters, the others
  (``tollgate_store_up``, ...) as observable gauges;
- the round-trip histogram (``tollgate_store_round_trip_seconds``, per Redis
  node) as two observable counters, ``tollgate_store_round_trip_seconds_count``
  (round trips) and ``tollgate_store_round_trip_seconds_sum`` (their seconds):
  OpenTelemetry has no asynchronous histogram, and a cumulative count and sum
  give the mean round trip over any interval (rate of the sum / rate of the
  count). The buckets are in :meth:`tollgate.Limiter.metrics` and in
  tollgate.prometheus.

A collection reads one snapshot of each limiter (:meth:`tollgate.Limiter.metrics`,
no I/O) for all the instruments' callbacks.

Several limiters on one meter: give each a name, in one call
(``TollgateInstruments({"api": a, "jobs": b}, meter)``) or one call each
(``TollgateInstruments(a, meter, name="api")``); the name is the value of a
``limiter`` attribute on its observations. The instruments are made once per
meter and shared. :meth:`TollgateInstruments.detach` stops observing its
limiters (OpenTelemetry's API cannot remove an instrument); a closed limiter
has no observations.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any, Callable, Dict, Iterable, List, MutableMapping, Optional, Set, Tuple, Union

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from . import _metrics
from ._metrics import Limiters, Source

__all__ = ["TollgateInstruments"]

#: A snapshot older than this is read again even if no instrument's callback
#: has repeated (a collection that skipped some instruments).
_MAX_SNAPSHOT_AGE = 1.0

Number = Union[int, float]


def _number(value: float) -> Number:
    """A count as an int (counters count whole things), else the float."""
    return int(value) if value.is_integer() else value


class _MeterState:
    """The tollgate instruments of one meter and the limiters they observe."""

    def __init__(self) -> None:
        # `registering` orders the registrations (instruments are made under
        # it); `lock` guards the sources and the snapshot. A collection may
        # call a callback (which takes `lock`) while the SDK holds its own
        # lock, which making an instrument takes too: never make one under
        # `lock`.
        self.registering = threading.Lock()
        self.lock = threading.Lock()
        self.sources: List[Tuple["TollgateInstruments", Source]] = []
        self.instruments: Dict[str, Any] = {}
        # The last snapshot: instrument name -> (attributes, value) rows.
        self.rows: Dict[str, List[Tuple[Dict[str, str], Number]]] = {}
        self.read_at: Optional[float] = None
        self.consumed: Set[str] = set()

    def declare(self, meter: Meter, name: str, kind: str, description: str) -> None:
        """The instruments of one series, unless made already."""
        if kind == "histogram":
            self._make(meter.create_observable_counter, name + "_count", "", description + " (their number)")
            self._make(meter.create_observable_counter, name + "_sum", "s", description + " (their sum)")
        elif kind == "counter":
            self._make(meter.create_observable_counter, name, _unit(name), description)
        elif name in _metrics.ADDITIVE_GAUGES:
            self._make(meter.create_observable_up_down_counter, name, _unit(name), description)
        else:
            self._make(meter.create_observable_gauge, name, _unit(name), description)

    def _make(self, create: Callable[..., Any], name: str, unit: str, description: str) -> None:
        if name in self.instruments:
            return

        def callback(options: CallbackOptions) -> Iterable[Observation]:
            return self.observe(name)

        self.instruments[name] = create(name, callbacks=[callback], unit=unit, description=description)

    def observe(self, name: str) -> List[Observation]:
        """One instrument's observations. A collection calls every
        instrument's callback once, so a callback that comes again (or a
        snapshot over a second old) starts the next collection: one snapshot
        of each limiter serves all the instruments of one collection."""
        with self.lock:
            now = time.monotonic()
            if self.read_at is None or name in self.consumed or now - self.read_at > _MAX_SNAPSHOT_AGE:
                self.rows = self._read()
                self.read_at = now
                self.consumed = set()
            self.consumed.add(name)
            return [Observation(value, attributes) for attributes, value in self.rows.get(name, ())]

    def _read(self) -> Dict[str, List[Tuple[Dict[str, str], Number]]]:
        rows: Dict[str, List[Tuple[Dict[str, str], Number]]] = {}
        for extra, s in _metrics.read([source for _, source in self.sources]):
            attributes = dict(extra, **s.labels)
            if s.type == "histogram":
                rows.setdefault(s.name + "_count", []).append((attributes, s.count))
                rows.setdefault(s.name + "_sum", []).append((attributes, s.sum))
            elif s.type == "counter" or s.name in _metrics.ADDITIVE_GAUGES:
                rows.setdefault(s.name, []).append((attributes, _number(s.value)))
            else:
                rows.setdefault(s.name, []).append((attributes, s.value))
        return rows


def _unit(name: str) -> str:
    return "s" if name.endswith("_seconds") else ""


_states: MutableMapping[Meter, _MeterState] = weakref.WeakKeyDictionary()
_states_lock = threading.Lock()


def _state_of(meter: Meter) -> _MeterState:
    with _states_lock:
        state = _states.get(meter)
        if state is None:
            # (The state holds no reference to its meter, the key.)
            state = _states[meter] = _MeterState()
        return state


class TollgateInstruments:
    """Observes one limiter's metrics, or several by name, through
    asynchronous instruments on an OpenTelemetry ``Meter`` (the module's
    docstring lists them).

    ``limiter``  a :class:`tollgate.Limiter`, or a mapping of names to
                 limiters (each name the value of their ``limiter``
                 attribute)
    ``meter``    an ``opentelemetry.metrics.Meter``
    ``name``     with one limiter: the value of a ``limiter`` attribute on
                 its observations (None: no such attribute)

    Two limiters observed on one meter with the same attributes (both
    unnamed, or the same name) would report the same series:
    ``ValueError``.
    """

    def __init__(self, limiter: Limiters, meter: Meter, name: Optional[str] = None) -> None:
        sources = _metrics.sources(limiter, name)
        self._state = _state_of(meter)
        state = self._state
        # The series the limiters report now: those the library lists, and
        # any other (a newer library's) that they have already.
        series: Dict[str, Tuple[str, str]] = dict(_metrics.SERIES)
        for _, s in _metrics.read(sources):
            series.setdefault(s.name, (s.type, s.help))
        with state.registering:
            with state.lock:
                taken = [extra for _, (extra, _lim) in state.sources]
            for extra, _lim in sources:
                if extra in taken:
                    raise ValueError(
                        "a limiter with %s is observed on this meter already: give each limiter a name"
                        % (("limiter=%r" % extra[_metrics.LIMITER_LABEL]) if extra else "no name")
                    )
            for series_name, (kind, description) in series.items():
                state.declare(meter, series_name, kind, description)
            with state.lock:
                state.sources.extend((self, source) for source in sources)

    @property
    def instruments(self) -> Dict[str, Any]:
        """The meter's tollgate instruments by name (shared by every
        TollgateInstruments of the meter)."""
        with self._state.registering:
            return dict(self._state.instruments)

    def detach(self) -> None:
        """Stop observing this object's limiters (their series are no longer
        reported; the instruments stay, for the meter's other limiters).
        Idempotent."""
        with self._state.lock:
            self._state.sources = [(owner, s) for owner, s in self._state.sources if owner is not self]
            self._state.read_at = None

