"""The package's own Python layer (tollgate/__init__.py, tollgate/_errors.py):
public names, each error class's code, the code of an unknown C error, and
that close() detaches the limiter from every event loop that awaited a
check. Added for the mutation run (docs/testing.md, "Mutation testing"); the Redis test
uses the conftest's redis-server.
"""

from __future__ import annotations

import asyncio
import pickle
from typing import Union

import tollgate
from tollgate import (
    AuthError,
    Error,
    InvalidArgument,
    Policy,
    ProtocolError,
    TLSError,
    TollgateConnectionError,
    TollgateTimeoutError,
    UnsupportedError,
)
from tollgate._errors import _make

from conftest import needs_redis


def test_public_names() -> None:
    assert tollgate.Key == Union[str, bytes]
    for name in tollgate.__all__:
        assert getattr(tollgate, name) is not None, name
    assert tollgate.Limiter.__module__ == "tollgate"
    assert tollgate.KeyState.__module__ == "tollgate"
    assert callable(tollgate.rate_limit_headers)


def test_each_class_has_its_own_default_code() -> None:
    expected = {
        Error: "RL_E_INTERNAL",
        TollgateConnectionError: "RL_E_CONNECT",
        TollgateTimeoutError: "RL_E_TIMEOUT",
        AuthError: "RL_E_AUTH",
        TLSError: "RL_E_TLS",
        ProtocolError: "RL_E_PROTOCOL",
        InvalidArgument: "RL_E_INVALID_ARG",
        UnsupportedError: "RL_E_UNSUPPORTED",
    }
    for cls, code in expected.items():
        assert cls("m").code == code, cls
        assert cls("m", "RL_E_OTHER").code == "RL_E_OTHER"
        e = pickle.loads(pickle.dumps(cls("text", "RL_E_X")))
        assert type(e) is cls and e.code == "RL_E_X" and str(e) == "text"


def test_unknown_c_code() -> None:
    e = _make(-9999, "from a newer library")
    assert type(e) is Error
    assert e.code == "RL_E_-9999" and str(e) == "from a newer library"


@needs_redis
def test_close_detaches_every_loop(redis_server, prefix) -> None:
    lim = tollgate.Limiter(redis_server.url, key_prefix=prefix, timeout_ms=5000)
    p = Policy(10, "1m")
    loops = [asyncio.new_event_loop() for _ in range(2)]
    try:
        for loop in loops:
            assert loop.run_until_complete(lim.check_async("k", p)).allowed
        fd = lim._async_fd()
        lim.close()
        for loop in loops:
            # remove_reader is False when the loop no longer watches fd.
            assert loop.remove_reader(fd) is False
    finally:
        for loop in loops:
            loop.close()
