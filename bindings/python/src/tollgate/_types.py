"""Small value types of the tollgate API that live in Python."""

from __future__ import annotations

from typing import NamedTuple, Union

from ._native import Policy


class KeyState(NamedTuple):
    """One (key, policy) state listed by :meth:`tollgate.Limiter.keys`.

    ``remaining`` and ``reset_after`` (seconds) are what a cost-0 check would
    report now.
    """

    key: Union[str, bytes]
    policy: Policy
    remaining: int
    reset_after: float
