"""Small value types of the tollgate API that live in Python."""

from __future__ import annotations

from typing import NamedTuple, Union

from ._native import Policy


class KeyState(NamedTuple):
    """One (key, policy) state listed by :meth:`tollgate.Limiter.keys`.

    ``policy`` is the policy of the state's identity (its name, or the
    position of an unnamed one) from the list given to ``keys()``, and
    ``policy_index`` its position in that list. ``remaining`` and
    ``reset_after`` (seconds) are what a cost-0 check with that policy would
    report now.
    """

    key: Union[str, bytes]
    policy: Policy
    remaining: int
    reset_after: float
    policy_index: int
