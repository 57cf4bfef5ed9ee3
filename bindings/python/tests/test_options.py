"""tollgate.Limiter's keyword options (tollgate/_options.py): the exact
messages and bounds, and that each converted value reaches the library with
its meaning (a bool option turned off is off). Added for the mutation run
(docs/testing.md, "Mutation testing"). The Redis tests use the conftest's redis-server.
"""

from __future__ import annotations

import pathlib

import re

import pytest

from tollgate import InvalidArgument, Limiter, Policy, TLSError

from conftest import needs_redis


def exactly(text: str) -> str:
    """A pytest.raises(match=...) pattern for the whole message."""
    return "^" + re.escape(text) + "$"


NOWHERE = "redis://127.0.0.1:1"  # a Limiter connects lazily: never reached here


def test_unknown_option_lists_the_known_ones() -> None:
    with pytest.raises(TypeError) as info:
        Limiter(max_key=5)
    text = str(info.value)
    assert text.startswith("Limiter() got an unexpected option 'max_key' (known options: allow, clock, connect_timeout_ms,")
    assert text.endswith("tls_server_name, tls_verify, username)")
    assert "max_keys" in text and "spin_us" in text and "key_prefix" in text and ", deny, " in text


@pytest.mark.parametrize("name", ["max_keys", "shards", "max_key_len", "timeout_ms", "connections", "spin_us"])
def test_int_options_refuse_bool(name: str) -> None:
    with pytest.raises(TypeError, match=exactly("%s must be an int, not bool" % name)):
        Limiter(NOWHERE, **{name: True})


def test_int_bounds_are_named() -> None:
    with pytest.raises(InvalidArgument, match=r"^max_keys: must be between 1 and 9223372036854775807 \(got 9223372036854775808\)$"):
        Limiter(max_keys=2**63)
    with pytest.raises(InvalidArgument, match=r"^max_keys: must be between 1 and 9223372036854775807 \(got 0\)$"):
        Limiter(max_keys=0)
    with pytest.raises(InvalidArgument, match=r"^timeout_ms: must be between 1 and 4294967295 \(got 4294967296\)$"):
        Limiter(NOWHERE, timeout_ms=2**32)
    with pytest.raises(InvalidArgument, match=r"^shards: must be between 1 and 4294967295 \(got -3\)$"):
        Limiter(shards=-3)
    for options in ({"max_keys": -1}, {"timeout_ms": 0}):
        with pytest.raises(InvalidArgument) as info:
            Limiter(NOWHERE, **options)
        assert info.value.code == "RL_E_INVALID_ARG"
    # The lowest values are accepted.
    with Limiter(max_keys=1, shards=1, max_key_len=1) as lim:
        assert lim.check("k", Policy(1, "1s")).allowed


def test_the_top_of_each_range_passes_to_the_library() -> None:
    # The Python check's upper bounds are inclusive: the top value reaches
    # the library, whose own (narrower) range then names it.
    with pytest.raises(InvalidArgument, match="^options: max_keys 9223372036854775807 exceeds "):
        Limiter(max_keys=2**63 - 1)
    with pytest.raises(InvalidArgument, match="^options: shards 4294967295 exceeds "):
        Limiter(shards=2**32 - 1)


def test_max_keys_reaches_the_store() -> None:
    now = [1_700_000_000_000_000]
    with Limiter(max_keys=2, shards=1, clock=lambda: now[0]) as lim:
        p = Policy(1, "1h")
        for k in ("a", "b", "c"):  # "a" is evicted by "c"
            assert lim.check(k, p).allowed
            now[0] += 1000
        assert lim.check("a", p).allowed
        assert not lim.check("c", p).allowed


def test_max_key_len_reaches_the_library() -> None:
    with Limiter(max_key_len=4) as lim:
        assert lim.check("abcd", Policy(1, "1s")).allowed
        with pytest.raises(InvalidArgument) as info:
            lim.check("abcde", Policy(1, "1s"))
        assert info.value.code == "RL_E_KEY_TOO_LONG"


def test_string_and_path_options() -> None:
    with pytest.raises(TypeError, match=exactly("key_prefix must be a str, not PosixPath")):
        Limiter(NOWHERE, key_prefix=pathlib.Path("x"))
    with pytest.raises(TypeError, match=exactly("tls_ca_file must be a str or os.PathLike, not bytes")):
        Limiter("rediss://127.0.0.1:1", tls_ca_file=b"/ca.pem")
    with pytest.raises(TypeError, match=exactly("username must be a str, not int")):
        Limiter(NOWHERE, username=1)
    with pytest.raises(InvalidArgument, match=exactly("tls_ca_file: contains a NUL character")) as info:
        Limiter("rediss://127.0.0.1:1", tls_ca_file=pathlib.Path("/a\0b"))
    assert info.value.code == "RL_E_INVALID_ARG"
    with pytest.raises(InvalidArgument, match=exactly("password: contains a NUL character")):
        Limiter(NOWHERE, password="a\0b")


def test_every_path_option_takes_a_pathlike() -> None:
    missing = pathlib.Path("/nonexistent/tollgate-test.pem")
    Limiter("rediss://127.0.0.1:1", tls_ca_dir=pathlib.Path("/nonexistent")).close()  # read when used
    for options in (
        {"tls_ca_file": missing},
        {"tls_cert_file": missing, "tls_key_file": pathlib.Path("/nonexistent/key.pem")},
        {"tls_key_file": missing, "tls_cert_file": pathlib.Path("/nonexistent/cert.pem")},
    ):
        # Loaded when the limiter is made: the path arrived as a str.
        with pytest.raises(TLSError) as info:
            Limiter("rediss://127.0.0.1:1", **options)
        assert info.value.code == "RL_E_TLS"


def test_other_option_messages() -> None:
    with pytest.raises(TypeError, match=exactly("failure_mode must be a str, not bytes")):
        Limiter(NOWHERE, failure_mode=b"open")
    with pytest.raises(InvalidArgument, match=r"^failure_mode: unknown 'OPEN' \(expected 'open', 'closed', 'local' or 'error'\)$") as info:
        Limiter(NOWHERE, failure_mode="OPEN")
    assert info.value.code == "RL_E_INVALID_ARG"
    with pytest.raises(TypeError, match=exactly("spin_us must be an int, not str")):
        Limiter(NOWHERE, spin_us="5")
    with pytest.raises(InvalidArgument, match=r"^spin_us: must be between 0 and 1000 \(got -1\)$") as info:
        Limiter(NOWHERE, spin_us=-1)
    assert info.value.code == "RL_E_INVALID_ARG"
    with pytest.raises(TypeError, match=exactly("clock must be callable, not int")):
        Limiter(clock=5)
    with pytest.raises(TypeError, match=exactly("deny_cache must be a bool, not str")):
        Limiter(NOWHERE, deny_cache="off")
    for mode in ("open", "closed", "local", "error"):
        Limiter(NOWHERE, failure_mode=mode).close()


@needs_redis
@pytest.mark.parametrize("on", [True, False])
def test_deny_cache_option_reaches_the_library(redis_server, prefix, on: bool) -> None:
    with Limiter(redis_server.url, key_prefix=prefix, deny_cache=on) as lim:
        p = Policy(1, "1h")
        assert lim.check("k", p).allowed
        assert not lim.check("k", p).allowed
        d = lim.check("k", p)
        assert not d.allowed
        assert d.source == ("deny_cache" if on else "store")
