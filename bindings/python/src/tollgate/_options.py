"""Checks tollgate.Limiter's keyword options and converts them to the values
of the C struct rl_options (capi/include/tollgate.h; docs/redis.md has the
ranges). Called by the extension's Limiter constructor.

None means "the default" for every option. Messages name the option and
never echo a value: it may be a password.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any, Dict, Iterable, List

from . import _log, _native
from ._errors import InvalidArgument

_UINT32_OPTIONS = (
    "max_key_len",
    "shards",
    "connect_timeout_ms",
    "timeout_ms",
    "local_divisor",
    "deny_cache_size",
    "connections",
    "reconnect_max_ms",
)
_STR_OPTIONS = ("key_prefix", "username", "password", "tls_server_name")
_PATH_OPTIONS = ("tls_ca_file", "tls_ca_dir", "tls_cert_file", "tls_key_file")
# True: 1, False: -1 (the C fields' "off"; 0 is "the default").
_BOOL_OPTIONS = ("deny_cache", "tls_verify", "metrics")
_LIST_OPTIONS = ("allow", "deny")
OPTIONS = frozenset(
    ("max_keys", "failure_mode", "clock", "spin_us", "shadow", "logger", "max_async", "driver")
    + _UINT32_OPTIONS
    + _STR_OPTIONS
    + _PATH_OPTIONS
    + _BOOL_OPTIONS
    + _LIST_OPTIONS
)

#: The ipaddress objects a list entry may be (taken by their str()).
IP_OBJECTS = (
    ipaddress.IPv4Address,
    ipaddress.IPv6Address,
    ipaddress.IPv4Network,
    ipaddress.IPv6Network,
    ipaddress.IPv4Interface,
    ipaddress.IPv6Interface,
)


def _type_name(value: object) -> str:
    return type(value).__name__


def list_entries(entries: Iterable[Any], what: str) -> List[bytes]:
    """The entries of an allow or deny list as the bytes rl_set_list takes:
    a str (UTF-8), bytes, or an ipaddress address or network (its str()).
    The library checks the entries themselves (and names a bad one by its
    index, without echoing it)."""
    if isinstance(entries, (str, bytes, bytearray)) or not isinstance(entries, Iterable):
        raise TypeError(
            "%s must be an iterable of str (keys, IP addresses, CIDR ranges), not %s" % (what, _type_name(entries))
        )
    out: List[bytes] = []
    for i, e in enumerate(entries):
        if isinstance(e, str):
            out.append(e.encode("utf-8"))
        elif isinstance(e, bytes):
            out.append(e)
        elif isinstance(e, IP_OBJECTS):
            out.append(str(e).encode("ascii"))
        else:
            raise TypeError(
                "%s[%d] must be a str, bytes or an ipaddress address or network, not %s" % (what, i, _type_name(e))
            )
    return out


def normalize(options: Dict[str, Any]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for name, value in options.items():
        if name not in OPTIONS:
            raise TypeError(
                "Limiter() got an unexpected option %r (known options: %s)" % (name, ", ".join(sorted(OPTIONS)))
            )
        if value is None:
            continue
        if name == "max_keys" or name in _UINT32_OPTIONS:
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError("%s must be an int, not %s" % (name, _type_name(value)))
            top = 2**63 - 1 if name == "max_keys" else 2**32 - 1
            if not 1 <= value <= top:
                raise InvalidArgument("%s: must be between 1 and %d (got %d)" % (name, top, value), "RL_E_INVALID_ARG")
            out[name] = value
        elif name in _STR_OPTIONS or name in _PATH_OPTIONS:
            if name in _PATH_OPTIONS and isinstance(value, os.PathLike):
                value = os.fspath(value)
            if not isinstance(value, str):
                kinds = "a str or os.PathLike" if name in _PATH_OPTIONS else "a str"
                raise TypeError("%s must be %s, not %s" % (name, kinds, _type_name(value)))
            if "\0" in value:
                raise InvalidArgument("%s: contains a NUL character" % name, "RL_E_INVALID_ARG")
            out[name] = value
        elif name in _BOOL_OPTIONS:
            if not isinstance(value, bool):
                raise TypeError("%s must be a bool, not %s" % (name, _type_name(value)))
            out[name] = 1 if value else -1
        elif name == "failure_mode":
            if not isinstance(value, str):
                raise TypeError("failure_mode must be a str, not %s" % _type_name(value))
            modes = _native.FAILURE_MODES
            if value not in modes:
                raise InvalidArgument(
                    "failure_mode: unknown %r (expected 'open', 'closed', 'local' or 'error')" % value,
                    "RL_E_INVALID_ARG",
                )
            out[name] = modes[value]
        elif name == "spin_us":
            # 0 means "never spin" here; the C field's 0 is "the default".
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError("spin_us must be an int, not %s" % _type_name(value))
            if not 0 <= value <= 1000:
                raise InvalidArgument("spin_us: must be between 0 and 1000 (got %d)" % value, "RL_E_INVALID_ARG")
            out[name] = value if value > 0 else -1
        elif name == "driver":
            # Who reads the Redis replies of check_async (docs/python.md).
            if not isinstance(value, str):
                raise TypeError("driver must be a str, not %s" % _type_name(value))
            if value not in ("auto", "loop", "thread"):
                raise InvalidArgument(
                    "driver: unknown %r (expected 'auto', 'loop' or 'thread')" % value,
                    "RL_E_INVALID_ARG",
                )
            out[name] = value
        elif name == "max_async":
            # 0 means "no bound" here (as in the URL's ?max_async=0); the C
            # field's 0 is "the default" and its -1 "no bound".
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError("max_async must be an int, not %s" % _type_name(value))
            if not 0 <= value <= 2**31 - 1:
                raise InvalidArgument(
                    "max_async: must be between 0 (no bound) and %d (got %d)" % (2**31 - 1, value),
                    "RL_E_INVALID_ARG",
                )
            out[name] = value if value > 0 else -1
        elif name == "shadow":
            # 1: the whole limiter in shadow mode; 0 (the C default): enforce.
            if not isinstance(value, bool):
                raise TypeError("shadow must be a bool, not %s" % _type_name(value))
            out[name] = 1 if value else 0
        elif name in _LIST_OPTIONS:
            # Applied by rl_set_list once the limiter exists.
            out[name] = list_entries(value, name)
        elif name == "clock":
            if not callable(value):
                raise TypeError("clock must be callable, not %s" % _type_name(value))
            out[name] = value
        elif name == "logger":
            # Where a Redis limiter's log messages go (tollgate/_log.py);
            # None: the "tollgate" logger.
            out[name] = _log.check_logger(value)
    if out.get("driver", "auto") == "auto":
        # The environment says what "auto" means (docs/python.md): "loop"
        # there is the loop wherever it can drive (not TLS), without an
        # error where it cannot. For a deployment, or a suite run both ways.
        env = os.environ.get("TOLLGATE_DRIVER", "")
        if env:
            if env not in ("auto", "loop", "thread"):
                raise InvalidArgument(
                    "TOLLGATE_DRIVER: unknown %r (expected 'auto', 'loop' or 'thread')" % env,
                    "RL_E_INVALID_ARG",
                )
            out["driver"] = "auto-loop" if env == "loop" else env
    return out
