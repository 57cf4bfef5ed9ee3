"""tollgate's exception hierarchy, one class per family of RL_E_* codes.

Every error raised by the library is a :class:`Error` whose ``code`` is the
name of the C code (``"RL_E_TIMEOUT"``, ...) and whose message is the
library's detail text (``rl_last_error()``), which never contains a password.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple, Type


class Error(Exception):
    """Base class of every tollgate error. ``code`` is the RL_E_* name."""

    default_code = "RL_E_INTERNAL"

    def __init__(self, message: str = "", code: Optional[str] = None) -> None:
        super().__init__(message)
        self.code: str = code if code is not None else self.default_code

    def __reduce__(self) -> Tuple[Any, ...]:  # keep .code through pickling
        return (type(self), (str(self), self.code))


class TollgateConnectionError(Error, ConnectionError):
    """The store could not be reached (RL_E_CONNECT), or the limiter was
    closed (RL_E_CLOSED)."""

    default_code = "RL_E_CONNECT"


class TollgateTimeoutError(Error, TimeoutError):
    """The store did not answer before the call's deadline (RL_E_TIMEOUT)."""

    default_code = "RL_E_TIMEOUT"


class AuthError(Error):
    """The store refused the credentials (RL_E_AUTH)."""

    default_code = "RL_E_AUTH"


class TLSError(Error):
    """TLS failed: handshake, certificate or host name (RL_E_TLS)."""

    default_code = "RL_E_TLS"


class ProtocolError(Error):
    """The store sent a malformed reply (RL_E_PROTOCOL) or an error reply
    (RL_E_STORE)."""

    default_code = "RL_E_PROTOCOL"


class InvalidArgument(Error, ValueError):
    """A bad key, policy, cost, option or URL (RL_E_INVALID_ARG,
    RL_E_KEY_INVALID, RL_E_KEY_TOO_LONG, RL_E_POLICY, RL_E_OVERFLOW,
    RL_E_URL, RL_E_VERSION)."""

    default_code = "RL_E_INVALID_ARG"


class UnsupportedError(Error):
    """Valid, but this store or build does not support it
    (RL_E_UNSUPPORTED)."""

    default_code = "RL_E_UNSUPPORTED"


class NothingToRefund(Error, LookupError):
    """A refund found no usage to give back under any of its policies: the
    key was never charged, was given back already, or time refilled it
    (RL_E_NOT_FOUND). Nothing was written."""

    default_code = "RL_E_NOT_FOUND"


class BusyError(Error):
    """Back-pressure: the limiter already has ``max_async`` async checks
    waiting for the store (RL_E_BUSY), so this one was refused at once:
    nothing was sent or queued. Try again later, or answer the request as
    your service does when overloaded."""

    default_code = "RL_E_BUSY"


class LeaseLost(Error, LookupError):
    """A lease renewed after it ended: it expired (its ttl passed without a
    renew) or was released (RL_E_NOT_FOUND). The work it guarded is no
    longer counted; acquire a new lease to go on."""

    default_code = "RL_E_NOT_FOUND"


_CLASS_OF: Dict[str, Type[Error]] = {
    "RL_E_INVALID_ARG": InvalidArgument,
    "RL_E_KEY_INVALID": InvalidArgument,
    "RL_E_KEY_TOO_LONG": InvalidArgument,
    "RL_E_POLICY": InvalidArgument,
    "RL_E_OVERFLOW": InvalidArgument,
    "RL_E_VERSION": InvalidArgument,
    "RL_E_URL": InvalidArgument,
    "RL_E_UNSUPPORTED": UnsupportedError,
    "RL_E_CONNECT": TollgateConnectionError,
    "RL_E_CLOSED": TollgateConnectionError,
    "RL_E_TIMEOUT": TollgateTimeoutError,
    "RL_E_AUTH": AuthError,
    "RL_E_TLS": TLSError,
    "RL_E_PROTOCOL": ProtocolError,
    "RL_E_STORE": ProtocolError,
    "RL_E_NOT_FOUND": NothingToRefund,
    "RL_E_BUSY": BusyError,
    # RL_E_NOMEM, RL_E_INTERNAL and unknown codes: the base class.
}

_NAME_OF: Dict[int, str] = {}


def _code_names() -> Dict[int, str]:
    if not _NAME_OF:
        from . import _native

        _NAME_OF.update({v: k for k, v in _native.ERROR_CODES.items()})
    return _NAME_OF


def error_class(code_name: str) -> Type[Error]:
    """The exception class raised for an RL_E_* code name."""
    return _CLASS_OF.get(code_name, Error)


def _make(code: int, message: str) -> Error:
    """Called by the extension: the exception for a C return code."""
    name = _code_names().get(code, "RL_E_%d" % code)
    return error_class(name)(message, name)


__all__: Tuple[str, ...] = (
    "Error",
    "TollgateConnectionError",
    "TollgateTimeoutError",
    "AuthError",
    "TLSError",
    "ProtocolError",
    "InvalidArgument",
    "UnsupportedError",
    "NothingToRefund",
    "BusyError",
    "LeaseLost",
    "error_class",
)
