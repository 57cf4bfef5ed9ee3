"""Bad input and wrong types: the right exception class, a clear message."""

from __future__ import annotations

import pathlib

import pytest

import tollgate
from tollgate import (
    AuthError,
    Error,
    InvalidArgument,
    Limiter,
    NothingToRefund,
    Policy,
    ProtocolError,
    TLSError,
    TollgateConnectionError,
    TollgateTimeoutError,
    UnsupportedError,
)
from tollgate._errors import _make, error_class

SECRET = "Sup3r-Secret-Pa55"


def test_hierarchy():
    assert issubclass(TollgateTimeoutError, TimeoutError)
    assert issubclass(TollgateConnectionError, ConnectionError)
    assert issubclass(InvalidArgument, ValueError)
    for cls in (
        AuthError,
        InvalidArgument,
        ProtocolError,
        TLSError,
        TollgateConnectionError,
        TollgateTimeoutError,
        UnsupportedError,
        NothingToRefund,
    ):
        assert issubclass(cls, Error)
        e = cls("message")
        assert str(e) == "message" and e.code == cls.default_code


def test_every_code_maps_to_a_class():
    from tollgate import _native

    expected = {
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
        "RL_E_BUSY": tollgate.BusyError,
        "RL_E_NOMEM": Error,
        "RL_E_INTERNAL": Error,
    }
    for name, code in _native.ERROR_CODES.items():
        if name == "RL_E_DONE":
            continue
        e = _make(code, "text")
        assert type(e) is expected[name], name
        assert e.code == name and str(e) == "text"
        assert error_class(name) is expected[name]
    assert type(_make(-999, "x")) is Error and _make(-999, "x").code == "RL_E_-999"


@pytest.mark.parametrize(
    "key, needle",
    [
        (123, "key must be str or bytes, not int"),
        (None, "key must be str or bytes, not NoneType"),
        (bytearray(b"k"), "key must be str or bytes, not bytearray"),
        (memoryview(b"k"), "key must be str or bytes, not memoryview"),
        (["k"], "key must be str or bytes, not list"),
    ],
)
def test_key_types(key, needle):
    lim = Limiter()
    for call in (lambda: lim.check(key, Policy(1, 1)), lambda: lim.reset(key)):
        with pytest.raises(TypeError) as info:
            call()
        assert needle in str(info.value)


def test_empty_and_long_keys():
    lim = Limiter()
    for key in ("", b""):
        with pytest.raises(InvalidArgument) as info:
            lim.check(key, Policy(1, 1))
        assert info.value.code == "RL_E_KEY_INVALID"
        with pytest.raises(InvalidArgument):
            lim.reset(key)
    with pytest.raises(InvalidArgument) as info:
        lim.check("k" * 513, Policy(1, 1))
    assert info.value.code == "RL_E_KEY_TOO_LONG"
    with pytest.raises(UnicodeEncodeError):
        lim.check("\udc80", Policy(1, 1))  # a lone surrogate has no UTF-8


def test_check_arguments():
    lim = Limiter()
    p = Policy(1, 1)
    with pytest.raises(TypeError, match="at least one tollgate.Policy"):
        lim.check("k")
    with pytest.raises(TypeError, match="policies must be tollgate.Policy, not tuple"):
        lim.check("k", (100, 60))
    with pytest.raises(TypeError, match="policies must be tollgate.Policy, not list"):
        lim.check("k", [p])
    with pytest.raises(TypeError, match="not str"):
        lim.check("k", p, "1h")
    with pytest.raises(TypeError, match="cost must be an int, not float"):
        lim.check("k", p, cost=1.0)
    with pytest.raises(TypeError, match="cost must be an int, not bool"):
        lim.check("k", p, cost=True)
    with pytest.raises(TypeError, match="cost must be an int, not str"):
        lim.check("k", p, cost="1")
    with pytest.raises(TypeError, match="unexpected keyword argument 'weight'"):
        lim.check("k", p, weight=1)
    with pytest.raises(TypeError, match="missing the key"):
        lim.check()
    with pytest.raises(TypeError, match="key must be str or bytes, not int"):
        lim.check(7, p)
    with pytest.raises(TypeError, match="never initialized"):
        Limiter.__new__(Limiter).check("k", p)
    with pytest.raises(TypeError, match=r"Policy \(argument 2\) was never initialized"):
        lim.check("k", Policy.__new__(Policy))  # an uninitialized Policy
    with pytest.raises(InvalidArgument) as info:
        lim.check("k", p, cost=-(2**53))  # a refund of more than 2^53 - 1
    assert info.value.code == "RL_E_INVALID_ARG"
    with pytest.raises(NothingToRefund) as info2:
        lim.check("k", p, cost=-1)  # "k" was never charged
    assert info2.value.code == "RL_E_NOT_FOUND" and isinstance(info2.value, LookupError)
    with pytest.raises(InvalidArgument) as info:
        lim.check("k", p, cost=2**64)
    assert info.value.code == "RL_E_OVERFLOW"
    with pytest.raises(InvalidArgument) as info:
        lim.check("k", *[Policy(i + 1, 1) for i in range(17)])
    assert info.value.code == "RL_E_INVALID_ARG"
    with pytest.raises(InvalidArgument) as info:
        lim.check("k", p, Policy(1, 1))
    assert info.value.code == "RL_E_POLICY"  # the same policy twice
    assert lim.check("k", *[Policy(i + 1, 1) for i in range(16)]).allowed


def test_limiter_options_types_and_values():
    with pytest.raises(TypeError, match="unexpected option 'timeout'"):
        Limiter(timeout=5)
    with pytest.raises(TypeError, match="unexpected option 'maxkeys'"):
        Limiter(maxkeys=5)
    with pytest.raises(TypeError, match="max_keys must be an int, not str"):
        Limiter(max_keys="10")
    with pytest.raises(TypeError, match="timeout_ms must be an int, not float"):
        Limiter(timeout_ms=0.5)
    with pytest.raises(TypeError, match="deny_cache must be a bool, not int"):
        Limiter(deny_cache=1)
    with pytest.raises(TypeError, match="tls_verify must be a bool"):
        Limiter(tls_verify="no")
    with pytest.raises(TypeError, match="failure_mode must be a str"):
        Limiter(failure_mode=1)
    with pytest.raises(TypeError, match="key_prefix must be a str"):
        Limiter(key_prefix=b"x")
    with pytest.raises(TypeError, match="clock must be callable"):
        Limiter(clock=5)
    with pytest.raises(TypeError, match="url must be a str or None, not bytes"):
        Limiter(b"redis://localhost")
    with pytest.raises(InvalidArgument, match="failure_mode: unknown 'sometimes'"):
        Limiter(failure_mode="sometimes")
    with pytest.raises(InvalidArgument, match="max_keys: must be between"):
        Limiter(max_keys=0)
    with pytest.raises(InvalidArgument, match="timeout_ms: must be between"):
        Limiter(timeout_ms=-1)
    with pytest.raises(InvalidArgument, match="connections: must be between"):
        Limiter(connections=2**32)
    with pytest.raises(TypeError, match="spin_us must be an int, not float"):
        Limiter("redis://127.0.0.1:1", spin_us=1.5)
    with pytest.raises(InvalidArgument, match="spin_us: must be between 0 and 1000"):
        Limiter("redis://127.0.0.1:1", spin_us=1001)
    for spin in (0, 1, 1000):
        Limiter("redis://127.0.0.1:1", spin_us=spin).close()
    with pytest.raises(InvalidArgument) as info:
        Limiter(max_key_len=70000)  # the library's own bound
    assert info.value.code == "RL_E_INVALID_ARG"
    with pytest.raises(InvalidArgument):
        Limiter(shards=5000)
    with pytest.raises(InvalidArgument, match="NUL"):
        Limiter(key_prefix="a\0b")
    # None means "default" for every option; PathLike for TLS files
    Limiter(max_keys=None, timeout_ms=None, failure_mode=None, clock=None)
    lim = Limiter("redis://127.0.0.1:1", tls_ca_file=None, key_prefix="x:")
    lim.close()


def test_password_never_in_type_errors():
    with pytest.raises(TypeError) as info:
        Limiter("redis://127.0.0.1:1", password=12345678901)
    assert "12345678901" not in str(info.value)
    assert "password must be a str, not int" in str(info.value)
    with pytest.raises(TypeError) as info:
        Limiter(SECRET.encode())
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com",
        "redis://",
        "redis://127.0.0.1:99999",
        "redis://127.0.0.1:6379/notadb",
        "redis://127.0.0.1:6379/?bogus=1",
        "redis://127.0.0.1:6379/?timeout_ms=abc",
        "redis://:%s@127.0.0.1:notaport" % SECRET,
        "redis://user:%s@127.0.0.1:6379/?bogus=1" % SECRET,
        "redis://:%s@[::1:6379" % SECRET,
        "redis://:%s@127.0.0.1:6379/?tls_ca=/x" % SECRET,
        "memory://somewhere",
        "redis://127.0.0.1:6379#frag",
        "unix://relative.sock",
    ],
)
def test_bad_urls(url):
    with pytest.raises(InvalidArgument) as info:
        Limiter(url)
    assert info.value.code == "RL_E_URL"
    assert SECRET not in str(info.value) and SECRET not in repr(info.value)
    assert str(info.value)


def test_memory_url_and_no_url():
    for url in (None, "", "memory://"):
        with Limiter(url) as lim:
            assert lim.store == "memory"
            assert lim.check("k", Policy(1, 1)).allowed


def test_pathlike_tls_option_is_accepted():
    # The CA is loaded when the limiter is made: the path arrived intact.
    with pytest.raises(TLSError) as info:
        Limiter("rediss://127.0.0.1:1", tls_ca_file=pathlib.Path("/nonexistent/ca.pem"))
    assert info.value.code == "RL_E_TLS"
    assert "/nonexistent/ca.pem" in str(info.value)


def test_clock_with_redis_is_unsupported_in_release_builds():
    try:
        lim = Limiter("redis://127.0.0.1:1", clock=lambda: 1_700_000_000_000_000)
    except UnsupportedError as e:
        assert e.code == "RL_E_UNSUPPORTED"
    else:  # a build configured with TOLLGATE_TESTING=ON accepts it
        lim.close()


def test_version():
    assert tollgate.LIBRARY_VERSION == "0.1.0"
    assert tollgate.__version__ == "0.1.0"


def test_error_codes_come_from_the_library() -> None:
    from tollgate import _native

    # rl_error_name names every code from -1 down to RL_E_BUSY, as tollgate.h.
    names = ["INVALID_ARG", "KEY_INVALID", "KEY_TOO_LONG", "POLICY", "OVERFLOW", "VERSION",
             "NOMEM", "URL", "UNSUPPORTED", "INTERNAL", "CONNECT", "TIMEOUT", "AUTH", "TLS",
             "PROTOCOL", "STORE", "CLOSED", "DONE", "NOT_FOUND", "BUSY"]
    assert _native.ERROR_CODES == {"RL_E_" + n: -(i + 1) for i, n in enumerate(names)}
    assert _native.MAX_POLICIES == 16
    limiter = tollgate.Limiter()
    policies = [tollgate.Policy(5, "1s")] * 17
    with pytest.raises(tollgate.InvalidArgument, match="expected 1 to 16 policies, got 17"):
        limiter.check("k", *policies)
