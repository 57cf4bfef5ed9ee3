"""Plans, key functions and the pieces the web integrations share.

``tollgate.asgi`` (Starlette / FastAPI) and ``tollgate.flask`` both decide
*who* a request is with a **key function** and *what limit* applies with a
**plan-to-policy map**; this module holds both, framework-agnostic.

Key functions
=============

A key function takes the framework's request object (a Starlette
``Request`` or ``flask.request``) and returns the rate-limit key as ``str``
or ``bytes``, or ``None`` to leave the request unlimited (e.g. health
checks). The ones here work with both frameworks, and name their keys with a
prefix so that different subjects never share a counter:

=========================================  ==================================
``client_address`` (the default)           ``"ip:203.0.113.7"``; IPv6 by its
                                           /64 network: ``"ip:2001:db8::/64"``
``client_address(trust_forwarded=True)``   the address an own proxy put in
                                           ``X-Forwarded-For``
``header_key("X-API-Key")``                ``"x-api-key:<value>"``
``organization_key("X-Org-Id")``           ``"org:<id>"``
=========================================  ==================================

A Node or C service that shares a Redis with a Python app enforces the same
limit when it builds the same key strings.

``X-Forwarded-For`` is **not** trusted by default: any client can send it,
so keying by it lets a client pick its own key. Behind a reverse proxy that
you run, use ``client_address(trust_forwarded=True, trusted_proxies=N)``
where N is the number of your proxies in front of the app: the client is the
N-th address from the right (the entries left of it were written by the
client and are ignored); or ``client_address(trusted_proxies=["10.0.0.0/8"])``
with your proxies' addresses and ranges: the header is read from the right,
skipping the proxies, and the first other address is the client.
``proxy_header="forwarded"`` reads the RFC 7239 ``Forwarded: for=...``
header instead (``"auto"``: ``Forwarded`` when present, else
``X-Forwarded-For``).

Allow and deny lists
====================

The integrations take ``allow=`` and ``deny=`` (the entries of
``Limiter(allow=..., deny=...)``, docs/exemptions.md): IP addresses and
CIDR ranges match the client address (found by the integration's
``trusted_proxies=``, or its ``client_address`` key function's), exact
entries match the key. A denied request is answered ``403`` before any
check; an allowed one goes through without any check. :class:`Exemptions`
holds them.

``header_key`` and ``organization_key`` fall back to the client address
when the value is missing, so leaving the header out does not escape the
limit; values longer than 128 bytes are replaced by their SHA-256
(keys stay short; ``hash=True`` hashes every value, e.g. API keys, which
should not appear in Redis key names). Keying by a header is only as good as
the header: key by an API key or organization **after** the application has
authenticated it (``organization_key(getter=...)`` reads it from wherever
the app stores the authenticated principal), or a client can rotate values
to get fresh limits.

Plans
=====

``DEFAULT_PLANS`` maps the plan names FREE, PRO and ENTERPRISE to 100, 1,000
and 10,000 requests per hour. A plan's value is one :class:`tollgate.Policy`
or a sequence of them (all must allow: e.g. ``(Policy(1000, "1h"),
Policy(20, "1s"))``). The integrations take ``plans=`` and a
``plan_of(request)`` function that returns the plan's name, or ``None`` for
the integration's ``policies=``.
"""

from __future__ import annotations

import collections.abc
import hashlib
import ipaddress
import json
import math
import types
from typing import (
    Any,
    Callable,
    Dict,
    Generator,
    Iterable,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import tollgate as _tollgate
from tollgate import Decision, Policy

__all__ = [
    "DEFAULT_PLANS",
    "HEADER_NAMES",
    "PROXY_HEADERS",
    "AddressList",
    "ClientRule",
    "Exemptions",
    "KeyFunc",
    "Limits",
    "Outcome",
    "client_address",
    "forwarded_for",
    "failed_response",
    "header_key",
    "organization_key",
]

Key = Union[str, bytes]
#: A key function: request -> key, or None to leave the request unlimited.
KeyFunc = Callable[[Any], Optional[Key]]
PolicySpec = Union[Policy, Sequence[Policy]]

#: The seed's plans: requests per hour by plan.
DEFAULT_PLANS: Mapping[str, Policy] = types.MappingProxyType(
    {
        "FREE": Policy(100, "1h"),
        "PRO": Policy(1000, "1h"),
        "ENTERPRISE": Policy(10000, "1h"),
    }
)

#: The headers the integrations set (Retry-After only on a denial, never on
#: an allowed decision: a shadowed one included), as
#: ``tollgate.rate_limit_headers`` names them.
HEADER_NAMES: Tuple[str, ...] = (
    "RateLimit-Policy",
    "RateLimit",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "Retry-After",
)

#: Values longer than this (in UTF-8 bytes) are keyed by their SHA-256, so a
#: client cannot send a key longer than the limiter's max_key_len (512).
MAX_KEY_VALUE = 128


# ---- key functions -----------------------------------------------------------


def _peer_address(request: Any) -> Optional[str]:
    """The TCP peer's address: werkzeug's ``remote_addr``, Starlette's
    ``client.host``."""
    addr = getattr(request, "remote_addr", None)
    if addr is None:
        client = getattr(request, "client", None)
        if client is not None:
            addr = client[0]
    return addr or None


def _header_lines(request: Any, name: str) -> List[str]:
    headers = request.headers
    getlist = getattr(headers, "getlist", None)
    if getlist is not None:
        return [str(v) for v in getlist(name)]
    value = headers.get(name)
    return [] if value is None else [str(value)]


def _header_value(request: Any, name: str) -> Optional[str]:
    value = request.headers.get(name)
    if value is None:
        return None
    value = str(value).strip()
    return value or None


IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

#: The headers a proxy may write the client's address into, for
#: ``proxy_header=``: ``"x-forwarded-for"`` (the default), ``"forwarded"``
#: (RFC 7239 ``for=``), or ``"auto"`` (``Forwarded`` when the request has
#: one, else ``X-Forwarded-For``).
PROXY_HEADERS = ("x-forwarded-for", "forwarded", "auto")

_INVALID = "RL_E_INVALID_ARG"
_HEX = frozenset("0123456789abcdefABCDEF")
_NOT_AN_ADDRESS = "not an IPv4 or IPv6 address or CIDR range (expected e.g. 10.0.0.0/8 or 2001:db8::/32)"


def _parse_ip(text: str) -> Optional[IPAddress]:
    """An address (IPv4-mapped IPv6 as IPv4), or None."""
    if not text or "%" in text:  # no IPv6 zone ids: the library has none
        return None
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _parse_node(text: Optional[str]) -> Optional[IPAddress]:
    """The address of a proxy header's entry ("203.0.113.7",
    "203.0.113.7:5000", "[2001:db8::1]:443", "2001:db8::1"), or None
    (``unknown``, an obfuscated identifier, anything else)."""
    if text is None:
        return None
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or (end + 1 < len(text) and text[end + 1] != ":"):
            return None
        return _parse_ip(text[1:end])
    if text.count(":") == 1:  # "203.0.113.7:5000"
        text = text.split(":", 1)[0]
    return _parse_ip(text)


def _format_address(ip: IPAddress, ipv6_prefix: Optional[int]) -> str:
    if isinstance(ip, ipaddress.IPv6Address) and ipv6_prefix is not None and ipv6_prefix < 128:
        return str(ipaddress.ip_network("%s/%d" % (ip, ipv6_prefix), strict=False))
    return str(ip)


def _normalize_address(text: str, ipv6_prefix: Optional[int]) -> Optional[str]:
    """A canonical address, or None if `text` is not an IP address."""
    ip = _parse_node(text)
    return None if ip is None else _format_address(ip, ipv6_prefix)


def _looks_like_address(text: str) -> bool:
    # The library's rule: hex digits, '.', ':' and '/' only, with a '.' or a
    # ':', is meant as an address or a range.
    return any(c in ".:" for c in text) and all(c in _HEX or c in ".:/" for c in text)


def _parse_range(text: str, where: str) -> Optional[IPNetwork]:
    """`text` as an address or CIDR range when it is meant as one (the
    library's rule, docs/exemptions.md), None when it is an exact key;
    InvalidArgument naming `where` (never echoing the text) when it is
    meant as an address but is not one."""
    if not text:
        raise _tollgate.InvalidArgument(where + ": empty", _INVALID)
    slash = text.find("/")
    head = text if slash < 0 else text[:slash]
    if (slash < 0 or _parse_ip(head) is None) and not _looks_like_address(text):
        return None
    ip = _parse_ip(head)
    if ip is None:
        raise _tollgate.InvalidArgument(where + ": " + _NOT_AN_ADDRESS, _INVALID)
    max_bits = 32 if ip.version == 4 else 128
    bits = max_bits
    if slash >= 0:
        digits = text[slash + 1 :]
        bad = "%s: a CIDR prefix length is 0 to %d" % (where, max_bits)
        if not 1 <= len(digits) <= 3 or not all("0" <= c <= "9" for c in digits):
            raise _tollgate.InvalidArgument(bad, _INVALID)
        bits = int(digits)
        if ip.version == 4 and ":" in head:  # an IPv4-mapped range: ::ffff:10.0.0.0/104
            if bits < 96:
                raise _tollgate.InvalidArgument(where + ": an IPv4-mapped range needs a prefix of 96 to 128", _INVALID)
            bits -= 96
        if bits > max_bits:
            raise _tollgate.InvalidArgument(bad, _INVALID)
    return ipaddress.ip_network((ip, bits), strict=False)


#: The ipaddress objects an entry may be (taken by their str()).
_IP_OBJECTS = (
    ipaddress.IPv4Address,
    ipaddress.IPv6Address,
    ipaddress.IPv4Network,
    ipaddress.IPv6Network,
    ipaddress.IPv4Interface,
    ipaddress.IPv6Interface,
)


def _as_network(entry: Any, where: str, keys_too: bool) -> Union[IPNetwork, bytes]:
    """One list entry: a network (an address is a /32 or /128), or, when
    `keys_too`, the bytes of an exact key."""
    if isinstance(entry, _IP_OBJECTS):
        text = str(entry)
    elif isinstance(entry, str):
        text = entry
    elif isinstance(entry, bytes) and keys_too:
        try:
            text = entry.decode("ascii")
        except UnicodeDecodeError:
            return entry  # not ASCII: an exact key
    else:
        kinds = "a str, bytes or" if keys_too else "a str or"
        raise TypeError("%s must be %s an ipaddress address or network, not %s" % (where, kinds, type(entry).__name__))
    network = _parse_range(text, where)
    if network is not None:
        return network
    if not keys_too:
        raise _tollgate.InvalidArgument(where + ": " + _NOT_AN_ADDRESS, _INVALID)
    return text.encode("utf-8")


def _entries(entries: Any, what: str, kinds: str) -> List[Any]:
    if isinstance(entries, (str, bytes, bytearray)) or not isinstance(entries, collections.abc.Iterable):
        raise TypeError("%s must be an iterable of str (%s), not %s" % (what, kinds, type(entries).__name__))
    return list(entries)


class AddressList:
    """An allow or deny list of a web integration: exact keys (matched
    against the key the integration's key function gives) and IPv4 / IPv6
    addresses and CIDR ranges (matched against the client address). The
    entries are those of ``Limiter(allow=..., deny=...)``
    (docs/exemptions.md), checked by the same rules: a bad one raises
    :class:`tollgate.InvalidArgument` naming it by index (``deny[2]``)
    without echoing it."""

    __slots__ = ("keys", "networks")

    def __init__(self, entries: Iterable[Any], what: str = "entries") -> None:
        keys = set()
        networks: List[IPNetwork] = []
        for i, e in enumerate(_entries(entries, what, "keys, IP addresses, CIDR ranges")):
            item = _as_network(e, "%s[%d]" % (what, i), keys_too=True)
            if isinstance(item, bytes):
                keys.add(item)
            else:
                networks.append(item)
        self.keys: "frozenset[bytes]" = frozenset(keys)
        self.networks: Tuple[IPNetwork, ...] = tuple(networks)

    def __bool__(self) -> bool:
        return bool(self.keys or self.networks)

    def has_address(self, ip: Optional[IPAddress]) -> bool:
        if ip is None:
            return False
        return any(ip.version == n.version and ip in n for n in self.networks)

    def has_key(self, key: Optional[Key]) -> bool:
        if key is None or not self.keys:
            return False
        return _key_bytes(key) in self.keys


def _networks(entries: Any, what: str) -> Tuple[IPNetwork, ...]:
    out = []
    for i, e in enumerate(_entries(entries, what, "IP addresses, CIDR ranges")):
        network = _as_network(e, "%s[%d]" % (what, i), keys_too=False)
        assert not isinstance(network, bytes)
        out.append(network)
    if not out:
        raise _tollgate.InvalidArgument(
            what + ": empty (None trusts no proxy; a list holds the proxies' addresses or ranges)", _INVALID
        )
    return tuple(out)


def _quoted_split(text: str, sep: str) -> List[str]:
    """`text` split at `sep` outside double quotes (a backslash escapes
    inside them)."""
    parts: List[str] = []
    cur: List[str] = []
    quoted = escaped = False
    for c in text:
        if escaped:
            escaped = False
        elif quoted and c == "\\":
            escaped = True
        elif c == '"':
            quoted = not quoted
        elif c == sep and not quoted:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(c)
    parts.append("".join(cur))
    return parts


def _unquote(value: str) -> Optional[str]:
    value = value.strip()
    if not value.startswith('"'):
        return value if value and '"' not in value else None
    if len(value) < 2 or not value.endswith('"'):
        return None
    out: List[str] = []
    escaped = False
    for c in value[1:-1]:
        if escaped or c != "\\":
            out.append(c)
            escaped = False
        else:
            escaped = True
    return "".join(out)


def forwarded_for(lines: Sequence[str]) -> List[Optional[str]]:
    """The ``for=`` node of each element of RFC 7239 ``Forwarded`` header
    lines, left to right (one per proxy hop; lines are joined as by a
    comma): ``'for=192.0.2.60;proto=http, for="[2001:db8::1]:4711"'`` ->
    ``["192.0.2.60", "[2001:db8::1]:4711"]``. Parameter names are
    case-insensitive and quoted values unescaped. An element without a
    ``for=`` (or with two, or malformed) gives ``None``."""
    out: List[Optional[str]] = []
    for line in lines:
        for element in _quoted_split(line, ","):
            if not element.strip():
                continue
            node: Optional[str] = None
            seen = 0
            for pair in _quoted_split(element, ";"):
                name, eq, value = pair.partition("=")
                if not pair.strip():
                    continue
                if not eq:
                    seen = 2  # malformed: no value
                    break
                if name.strip().lower() == "for":
                    seen += 1
                    node = _unquote(value)
            out.append(node if seen == 1 else None)
    return out


class ClientRule:
    """How a request's client address is found (the key function
    :func:`client_address` and the lists of the web integrations share it).

    - ``trusted_proxies`` None: the TCP peer.
    - an int N (with ``trust_forwarded``): the N-th entry from the right of
      the proxy header; fewer entries, or no address there: the peer.
    - networks: when the peer is in them, the proxy header is read from the
      right, skipping the entries inside them; the first other entry is the
      client (every entry trusted: the left-most). An entry that is no
      address (``unknown``, an obfuscated ``_id``, garbage) ends the walk:
      the client is unknown.
    """

    __slots__ = ("hops", "networks", "header")

    def __init__(self, hops: int = 0, networks: Tuple[IPNetwork, ...] = (), header: str = "x-forwarded-for") -> None:
        self.hops = hops
        self.networks = networks
        self.header = header

    def _trusted(self, ip: IPAddress) -> bool:
        return any(ip.version == n.version and ip in n for n in self.networks)

    def _entries(self, request: Any) -> List[Optional[str]]:
        if self.header != "x-forwarded-for":
            lines = [line for line in _header_lines(request, "Forwarded") if line.strip()]
            if lines or self.header == "forwarded":
                return forwarded_for(lines)
        hops = [p.strip() for line in _header_lines(request, "X-Forwarded-For") for p in line.split(",")]
        return [h for h in hops if h]

    def resolve(self, request: Any) -> Tuple[Optional[IPAddress], Optional[str]]:
        """(the client's address, or None; the text to key by when it is
        not an address: the peer's own text such as "testclient", or None
        for unknown)."""
        peer = _peer_address(request)
        peer_ip = _parse_node(peer) if peer is not None else None
        if self.networks:
            if peer_ip is None or not self._trusted(peer_ip):
                return peer_ip, peer
            client = peer_ip
            for entry in reversed(self._entries(request)):
                ip = _parse_node(entry)
                if ip is None:
                    return None, None  # unknown or obfuscated: the walk ends
                client = ip
                if not self._trusted(ip):
                    break
            return client, None
        if self.hops:
            entries = self._entries(request)
            if len(entries) >= self.hops:
                ip = _parse_node(entries[-self.hops])
                if ip is not None:
                    return ip, None
        return peer_ip, peer


_PEER = ClientRule()


def _check_header(proxy_header: Any) -> str:
    if not isinstance(proxy_header, str):
        raise TypeError("proxy_header must be a str, not %s" % type(proxy_header).__name__)
    header = proxy_header.lower()
    if header not in PROXY_HEADERS:
        raise ValueError("proxy_header must be 'x-forwarded-for', 'forwarded' or 'auto', not %r" % (proxy_header,))
    return header


def client_rule(
    trusted_proxies: Any = None, proxy_header: str = "x-forwarded-for", *, trust_forwarded: Optional[bool] = None
) -> ClientRule:
    """The :class:`ClientRule` of the options ``trusted_proxies`` (None, a
    hop count, or addresses / CIDR ranges of the proxies) and
    ``proxy_header``. A hop count reads the header only with
    ``trust_forwarded`` (None: yes)."""
    header = _check_header(proxy_header)
    if trust_forwarded is not None and not isinstance(trust_forwarded, bool):
        raise TypeError("trust_forwarded must be a bool, not %s" % type(trust_forwarded).__name__)
    if trusted_proxies is None:
        return _PEER
    if isinstance(trusted_proxies, int) and not isinstance(trusted_proxies, bool):
        if trusted_proxies < 1:
            raise ValueError("trusted_proxies must be >= 1 (got %d)" % trusted_proxies)
        if trust_forwarded is False:
            return _PEER
        return ClientRule(hops=trusted_proxies, header=header)
    if isinstance(trusted_proxies, bool) or isinstance(trusted_proxies, (str, bytes)) or not isinstance(
        trusted_proxies, collections.abc.Iterable
    ):
        raise TypeError(
            "trusted_proxies must be an int (a hop count) or a list of the proxies' addresses and CIDR ranges, not %s"
            % type(trusted_proxies).__name__
        )
    networks = _networks(trusted_proxies, "trusted_proxies")
    if trust_forwarded is False:
        raise ValueError("trusted_proxies as addresses reads the proxy header: trust_forwarded=False contradicts it")
    return ClientRule(networks=networks, header=header)


def client_address(
    request: Any = None,
    *,
    trust_forwarded: Optional[bool] = None,
    trusted_proxies: Any = 1,
    ipv6_prefix: Optional[int] = 64,
    proxy_header: str = "x-forwarded-for",
) -> Any:
    """Key by the client's IP address: ``"ip:<address>"``. The default key.

    Used directly as a key function (``key=client_address``) it keys by the
    TCP peer and ignores the proxy headers. Called without a request it
    returns a key function with other options::

        key=client_address(trust_forwarded=True, trusted_proxies=2)
        key=client_address(trusted_proxies=["10.0.0.0/8", "2001:db8::/32"])

    - ``trusted_proxies`` as a hop count N, with ``trust_forwarded=True``:
      take the address from the proxy header. Only behind proxies you run,
      which append the peer they saw: the client is the N-th entry from the
      right. A header with fewer entries, or one that is not an IP address
      there, is ignored (the peer address is used).
    - ``trusted_proxies`` as a list of your proxies' addresses and CIDR
      ranges (str or ``ipaddress`` objects): when the peer is one of them,
      the header is read from the right, skipping the entries that are
      proxies too; the first other entry is the client (entries further
      left were written by the client and are ignored). An entry that is
      not an address (``unknown``, an obfuscated ``_name``) ends the walk:
      the client is unknown (``"ip:unknown"``). A bad entry raises
      :class:`tollgate.InvalidArgument` (``trusted_proxies[1]: ...``).
    - ``proxy_header``: ``"x-forwarded-for"`` (default), ``"forwarded"``
      (RFC 7239: the ``for=`` of each element) or ``"auto"`` (``Forwarded``
      when the request has one, else ``X-Forwarded-For``). Choose the one
      your proxies write: a header they pass through untouched is the
      client's to forge.
    - ``ipv6_prefix``: an IPv6 client is keyed by its network of this many
      bits (default 64: one subscriber's usual allocation, so a client
      cannot rotate through its /64); ``None`` or 128 keys single addresses.
      IPv4-mapped IPv6 addresses are keyed as IPv4.

    A request whose address is unknown is keyed ``"ip:unknown"`` (all such
    requests share one limit rather than escaping it).
    """
    if trust_forwarded is not None and not isinstance(trust_forwarded, bool):
        raise TypeError("trust_forwarded must be a bool, not %s" % type(trust_forwarded).__name__)
    if ipv6_prefix is not None and (
        isinstance(ipv6_prefix, bool) or not isinstance(ipv6_prefix, int) or not 1 <= ipv6_prefix <= 128
    ):
        raise ValueError("ipv6_prefix must be None or an int in 1..128 (got %r)" % (ipv6_prefix,))
    if isinstance(trusted_proxies, int) and not isinstance(trusted_proxies, bool):
        # A hop count is read only with trust_forwarded=True (the default
        # of 1 must not make a plain client_address trust the header).
        rule = client_rule(trusted_proxies, proxy_header, trust_forwarded=bool(trust_forwarded))
    else:
        rule = client_rule(trusted_proxies, proxy_header, trust_forwarded=trust_forwarded)

    if request is None:
        return _address_key_function(rule, ipv6_prefix, trusted_proxies if rule is _PEER else rule.hops)
    return _address_key(rule, request, ipv6_prefix)


def _address_key_function(rule: ClientRule, ipv6_prefix: Optional[int], hops: int = 1) -> KeyFunc:
    """The key function of client_address(...) with `rule`, named after its
    options; it lends `rule` to the web integrations' lists."""

    def client_address_key(req: Any) -> str:
        return _address_key(rule, req, ipv6_prefix)

    if rule.networks:
        shown = "trusted_proxies=[%s]" % ", ".join(str(n) for n in rule.networks)
    else:
        shown = "trust_forwarded=%r, trusted_proxies=%d" % (bool(rule.hops), hops)
    if rule.header != "x-forwarded-for":
        shown += ", proxy_header=%r" % rule.header
    client_address_key.__qualname__ = "client_address(%s)" % shown
    client_address_key._tollgate_rule = rule  # type: ignore[attr-defined]
    return client_address_key


def _address_key(rule: ClientRule, request: Any, ipv6_prefix: Optional[int]) -> str:
    ip, text = rule.resolve(request)
    if ip is not None:
        return "ip:" + _format_address(ip, ipv6_prefix)
    return "ip:" + (text or "unknown")


def rule_of(key: Any) -> Optional[ClientRule]:
    """The :class:`ClientRule` of a :func:`client_address` key function,
    else None."""
    if key is client_address:
        return _PEER
    rule = getattr(key, "_tollgate_rule", None)
    return rule if isinstance(rule, ClientRule) else None


class Exemptions:
    """The allow and deny lists of a web integration (``allow=``,
    ``deny=``) and the rule finding the client address they match.

    A request is **denied** (403, before any check) when its client address
    or its key is on the deny list; otherwise **allowed** without any check
    when its address or key is on the allow list. The deny list wins.
    """

    __slots__ = ("allow", "deny", "rule")

    def __init__(self, allow: Optional[Iterable[Any]], deny: Optional[Iterable[Any]], rule: ClientRule) -> None:
        self.allow = AddressList(allow if allow is not None else (), "allow")
        self.deny = AddressList(deny if deny is not None else (), "deny")
        self.rule = rule

    def address(self, request: Any) -> Optional[IPAddress]:
        return self.rule.resolve(request)[0]

    def denies(self, ip: Optional[IPAddress], key: Optional[Key] = None) -> bool:
        return self.deny.has_address(ip) or self.deny.has_key(key)

    def allows(self, ip: Optional[IPAddress], key: Optional[Key]) -> bool:
        return self.allow.has_address(ip) or self.allow.has_key(key)


def web_options(
    key: KeyFunc, allow: Any, deny: Any, trusted_proxies: Any, proxy_header: str
) -> Tuple[KeyFunc, Optional[Exemptions]]:
    """A web integration's key function and lists from its options:
    ``trusted_proxies`` (None, a hop count, or the proxies' addresses and
    ranges) decides the client address the lists match, and makes the
    default key function (:func:`client_address`) key by that address;
    without it, a :func:`client_address` key function's own rule is used
    (else the peer). No lists: no Exemptions."""
    header = _check_header(proxy_header)
    if trusted_proxies is not None:
        rule = client_rule(trusted_proxies, header)
        if key is client_address:  # the default: key by the client so found
            key = _address_key_function(rule, 64)  # client_address's ipv6_prefix
    else:
        if header != "x-forwarded-for":
            raise ValueError("proxy_header needs trusted_proxies (which proxies write it)")
        rule = rule_of(key) or _PEER
    if allow is None and deny is None:
        return key, None
    exemptions = Exemptions(allow, deny, rule)
    if not exemptions.allow and not exemptions.deny:
        return key, None
    return key, exemptions


#: The JSON body of a deny-list 403.
FORBIDDEN_BODY = b'{"detail":"Forbidden"}'


def denied_by_list(decision: Decision) -> bool:
    """Whether a denial is the limiter's deny list's (answered 403)."""
    return not decision.allowed and decision.source == "deny_list"


def _value_key(prefix: str, value: str, hash_all: bool) -> str:
    raw = value.encode("utf-8", "surrogatepass")
    if hash_all or len(raw) > MAX_KEY_VALUE:
        return prefix + "sha256:" + hashlib.sha256(raw).hexdigest()
    return prefix + value


def _check_fallback(fallback: Optional[KeyFunc]) -> None:
    if fallback is not None and not callable(fallback):
        raise TypeError("fallback must be a key function or None, not %s" % type(fallback).__name__)


def header_key(
    name: str,
    *,
    prefix: Optional[str] = None,
    fallback: Optional[KeyFunc] = client_address,
    hash: bool = False,
) -> KeyFunc:
    """A key function keyed by a request header, e.g. ``header_key("X-API-Key")``.

    The key is ``prefix + value``; ``prefix`` defaults to the lower-cased
    header name and a colon (``"x-api-key:"``). ``hash=True`` keys by the
    SHA-256 of the value instead (``"x-api-key:sha256:<hex>"``), so that
    secrets such as API keys never appear in Redis key names or in
    ``Limiter.keys()``; values over 128 bytes (UTF-8) are always hashed.

    A request without the header (or with an empty one) is keyed by
    ``fallback`` (default: the client address); ``fallback=None`` leaves
    such requests unlimited.
    """
    if not isinstance(name, str) or not name:
        raise TypeError("header_key: the header name must be a non-empty str")
    if prefix is None:
        prefix = name.lower() + ":"
    elif not isinstance(prefix, str):
        raise TypeError("prefix must be a str, not %s" % type(prefix).__name__)
    _check_fallback(fallback)
    hash_all = bool(hash)

    def key(request: Any) -> Optional[Key]:
        value = _header_value(request, name)
        if value is None:
            return fallback(request) if fallback is not None else None
        return _value_key(prefix, value, hash_all)

    key.__qualname__ = "header_key(%r)" % name
    return key


def organization_key(
    header: Optional[str] = "X-Org-Id",
    *,
    getter: Optional[Callable[[Any], Optional[str]]] = None,
    fallback: Optional[KeyFunc] = client_address,
) -> KeyFunc:
    """A key function keyed by organization: ``"org:<id>"``.

    The id comes from ``getter(request)`` when given (e.g. ``lambda r:
    r.state.user.org_id`` in Starlette, ``lambda r: g.user.org_id`` in
    Flask: the organization the app authenticated), else from the request
    header ``header`` (default ``X-Org-Id``). A missing or empty id is
    keyed by ``fallback`` (default: the client address; ``None`` leaves the
    request unlimited). Ids over 128 bytes (UTF-8) are keyed by their SHA-256.
    """
    if getter is None:
        if not isinstance(header, str) or not header:
            raise TypeError("organization_key: give a header name or a getter")
    elif not callable(getter):
        raise TypeError("getter must be callable, not %s" % type(getter).__name__)
    _check_fallback(fallback)

    def key(request: Any) -> Optional[Key]:
        if getter is not None:
            org = getter(request)
            org = None if org is None else str(org).strip() or None
        else:
            org = _header_value(request, header)  # type: ignore[arg-type]
        if org is None:
            return fallback(request) if fallback is not None else None
        return _value_key("org:", org, False)

    key.__qualname__ = "organization_key(%r)" % (header if getter is None else getter,)
    return key


# ---- policies by plan ------------------------------------------------------------


def _policy_tuple(spec: Any, what: str) -> Tuple[Policy, ...]:
    if isinstance(spec, Policy):
        return (spec,)
    if isinstance(spec, (str, bytes)) or not isinstance(spec, Sequence):
        raise TypeError("%s must be a tollgate.Policy or a sequence of them, not %s" % (what, type(spec).__name__))
    out = tuple(spec)
    if not out:
        raise ValueError("%s: at least one Policy is needed" % what)
    for p in out:
        if not isinstance(p, Policy):
            raise TypeError("%s must hold tollgate.Policy objects, not %s" % (what, type(p).__name__))
    return out


class Limits:
    """Which policies apply to a request, and under which name.

    ``policies``: the policies when there are no plans, or when
    ``plan_of`` returns ``None`` (default then: the first plan in ``plans``).
    ``plans``: plan name -> Policy or sequence of policies; ``plan_of``
    without ``plans`` uses :data:`DEFAULT_PLANS`. ``name``: the policy name in
    the ``RateLimit-Policy`` and ``RateLimit`` headers; default the plan's
    name, or ``"default"``. A plan name missing from ``plans`` is a
    ``KeyError`` (a configuration error, not a reason to grant a limit).
    """

    __slots__ = ("_default", "_plans", "plan_of", "_name")

    def __init__(
        self,
        policies: Optional[PolicySpec] = None,
        plans: Optional[Mapping[str, PolicySpec]] = None,
        plan_of: Optional[Callable[[Any], Any]] = None,
        name: Optional[str] = None,
    ) -> None:
        if name is not None and not isinstance(name, str):
            raise TypeError("name must be a str, not %s" % type(name).__name__)
        if plan_of is not None and not callable(plan_of):
            raise TypeError("plan_of must be callable, not %s" % type(plan_of).__name__)
        if plans is not None and plan_of is None:
            raise ValueError("plans need plan_of, a function request -> plan name")
        if plan_of is not None and plans is None:
            plans = DEFAULT_PLANS
        self._plans: Dict[str, Tuple[Policy, ...]] = {}
        if plans is not None:
            if not isinstance(plans, Mapping):
                raise TypeError("plans must be a mapping of plan name to policies, not %s" % type(plans).__name__)
            for plan, spec in plans.items():
                self._plans[plan] = _policy_tuple(spec, "plans[%r]" % (plan,))
            if not self._plans:
                raise ValueError("plans is empty")
        if policies is not None:
            default: Optional[Tuple[Tuple[Policy, ...], str]] = (_policy_tuple(policies, "policies"), name or "default")
        elif self._plans:
            first = next(iter(self._plans))
            default = (self._plans[first], name or str(first))
        else:
            default = None
        self._default = default
        self.plan_of = plan_of
        self._name = name

    @property
    def empty(self) -> bool:
        """True when neither policies nor plans were given."""
        return self._default is None

    def for_plan(self, plan: Any) -> Tuple[Tuple[Policy, ...], str]:
        """(policies, name) for the plan name ``plan`` (None: the default)."""
        if plan is None:
            if self._default is None:
                raise ValueError("no policies: give policies= or plans=")
            return self._default
        try:
            policies = self._plans[plan]
        except KeyError:
            raise KeyError(
                "plan_of returned %r, which is not in plans (%s)" % (plan, ", ".join(map(repr, self._plans)))
            ) from None
        return policies, self._name or str(plan)


def resolve_cost(cost: Any, request: Any) -> int:
    value = cost(request) if callable(cost) else cost
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("cost must be an int (or a function returning one), not %s" % type(value).__name__)
    return value


def check_cost(cost: Any) -> None:
    if callable(cost):
        return
    if isinstance(cost, bool) or not isinstance(cost, int):
        raise TypeError("cost must be an int or a function request -> int, not %s" % type(cost).__name__)
    if cost < 0:
        raise ValueError("cost must be >= 0 (got %d)" % cost)


# ---- which responses count ----------------------------------------------------------

#: The ``count`` modes of the web integrations: every request counts
#: ("all"), or only those whose response failed ("failed": e.g. count only
#: failed logins) or succeeded ("successful"). The request is checked and
#: charged before it runs, so concurrent requests stay limited; a response
#: that does not count gets its units back with a refund.
COUNT_MODES = ("all", "failed", "successful")


def failed_response(status: int) -> bool:
    """The default ``failed`` predicate: a 4xx or 5xx response."""
    return status >= 400


def check_count(count: Any, failed: Any) -> None:
    if count not in COUNT_MODES:
        raise ValueError("count must be 'all', 'failed' or 'successful', not %r" % (count,))
    if not callable(failed):
        raise TypeError("failed must be a function status -> bool, not %s" % type(failed).__name__)


def counted(count: str, failed: Callable[[int], bool], status: int) -> bool:
    """Whether a response with ``status`` keeps the units its request was
    charged, under ``count``."""
    if count == "all":
        return True
    return bool(failed(status)) == (count == "failed")


class Pending(NamedTuple):
    """A charge that a response may give back (``count`` other than "all")."""

    key: Key
    policies: Tuple[Policy, ...]
    cost: int
    count: str
    failed: Callable[[int], bool]

    def gives_back(self, status: int) -> bool:
        return self.cost >= 1 and not counted(self.count, self.failed, status)


def check_key_func(key: Any) -> None:
    if not callable(key):
        raise TypeError("key must be a key function (request -> str | bytes | None), not %s" % type(key).__name__)


def check_key(key: Any) -> Key:
    if not isinstance(key, (str, bytes)):
        raise TypeError("the key function returned %s; expected str, bytes or None" % type(key).__name__)
    return key


def scoped_key(scope: str, key: Key) -> Key:
    """The key of a per-route limit: ``"<scope>|<key>"``."""
    if isinstance(key, bytes):
        return scope.encode("utf-8") + b"|" + key
    return scope + "|" + key


# ---- outcomes and headers -----------------------------------------------------------


class Outcome(NamedTuple):
    """One check made for a request: its decision, the policy the decision
    reports (``policies[decision.policy_index]``) and the policy's name."""

    decision: Decision
    policy: Policy
    name: str

    @classmethod
    def of(cls, decision: Decision, policies: Sequence[Policy], name: str) -> "Outcome":
        return cls(decision, policies[decision.policy_index], name)


def _retry_ms(o: Outcome) -> float:
    ms = o.decision.retry_after_ms
    return math.inf if ms < 0 else ms


def binding(outcomes: Sequence[Outcome]) -> Outcome:
    """The outcome a response's headers describe when a request went through
    several checks (a global limit and a per-route one checked apart: the
    two-step fallback of :func:`joint_check`, or limits on two limiters): a
    denial if any, the one with the longest retry; else the one with the
    fewest remaining (the core's own rule for the policies of one check, and
    so for the pairs of one ``check_keys``)."""
    denied = [o for o in outcomes if not o.decision.allowed]
    if denied:
        return max(denied, key=_retry_ms)
    return min(outcomes, key=lambda o: o.decision.remaining)


def headers_for(outcome: Outcome) -> Dict[str, str]:
    """The response headers of an outcome, as the core formats them
    (``tollgate.rate_limit_headers``: byte-identical in every binding)."""
    return dict(_tollgate.rate_limit_headers(outcome.decision, outcome.policy, name=outcome.name))


def denied_body(headers: Mapping[str, str]) -> bytes:
    """The JSON body of a 429: ``{"detail": "Rate limit exceeded",
    "retry_after": <seconds>}``."""
    try:
        retry = int(headers.get("Retry-After", "1"))
    except ValueError:
        retry = 1
    return json.dumps({"detail": "Rate limit exceeded", "retry_after": retry}, separators=(",", ":")).encode()


# ---- a global limit and a route's, in one decision ----------------------------------
#
# A request subject to a global limit (the Flask extension's, the ASGI
# middleware's) and to per-route limits is checked once for all of them with
# Limiter.check_keys: all or nothing, so a request the route denies costs
# nothing under the global limit, and one the global limit denies costs
# nothing on the route. When one call cannot take them (keys in several
# Redis Cluster slots: UnsupportedError; different costs; more than 8 keys
# or 16 policies; a key twice), the check falls back to two steps: the
# route's limits alone first (denied: the global limit is untouched), then
# the global limit, whose denial gives the route's charges back (a refund of
# the same cost). The generator below is that decision, written once for the
# synchronous (Flask) and the asyncio (ASGI) drivers.


class Charge(NamedTuple):
    """One (key, policies) pair a request is checked and charged under, with
    the policy name its headers carry."""

    key: Key
    policies: Tuple[Policy, ...]
    name: str
    cost: int


class Joint(NamedTuple):
    """The result of :func:`joint_check` over a request's charges (the
    global limit's first).

    ``outcomes`` holds, per charge, the outcome that reports it: the one
    decision of the single call for every charge, or, after the two-step
    fallback, each charge's own (``None`` for a charge never checked).
    ``denied_by`` is the index of the charge whose limit denied, or ``None``.
    """

    allowed: bool
    outcomes: Tuple[Optional[Outcome], ...]
    denied_by: Optional[int]

    def reported(self) -> List[Outcome]:
        """The distinct outcomes, for the request's outcome list (one after
        a single call)."""
        out: List[Outcome] = []
        for o in self.outcomes:
            if o is not None and all(o is not x for x in out):
                out.append(o)
        return out


def _key_bytes(key: Key) -> bytes:
    return key if isinstance(key, bytes) else key.encode("utf-8", "surrogatepass")


def one_call(charges: Sequence[Charge]) -> bool:
    """Whether ``check_keys`` can take every charge in one call: one cost,
    distinct keys, at most ``MAX_KEYS`` keys and ``MAX_POLICIES`` policies."""
    if not 2 <= len(charges) <= _tollgate._native.MAX_KEYS:
        return False
    if sum(len(c.policies) for c in charges) > _tollgate._native.MAX_POLICIES:
        return False
    if any(c.cost != charges[0].cost for c in charges):
        return False
    return len({_key_bytes(c.key) for c in charges}) == len(charges)


#: One step of the joint decision: ("keys", pairs, cost), ("check", key,
#: policies, cost) or ("refund", key, policies, cost); the driver sends back
#: the Decision (None for a refund, whose failure is dropped) and throws
#: UnsupportedError into the generator when check_keys raises it.
Step = Tuple[Any, ...]


def _joint_steps(charges: Sequence[Charge]) -> Generator[Step, Any, Joint]:
    if one_call(charges):
        try:
            d = yield ("keys", [(c.key, c.policies) for c in charges], charges[0].cost)
        except _tollgate.UnsupportedError:
            pass  # keys in several cluster slots: the two steps below
        else:
            # policy_index counts the policies pair by pair: find the pair.
            index, pair = d.policy_index, 0
            while index >= len(charges[pair].policies):
                index -= len(charges[pair].policies)
                pair += 1
            outcome = Outcome(d, charges[pair].policies[index], charges[pair].name)
            return Joint(d.allowed, (outcome,) * len(charges), None if d.allowed else pair)
    outcomes: List[Optional[Outcome]] = [None] * len(charges)
    charged: List[Charge] = []
    for i in list(range(1, len(charges))) + [0]:  # the routes first
        c = charges[i]
        d = yield ("check", c.key, c.policies, c.cost)
        outcomes[i] = Outcome.of(d, c.policies, c.name)
        if not d.allowed:
            for done in charged:
                if done.cost >= 1:
                    yield ("refund", done.key, done.policies, done.cost)
            return Joint(False, tuple(outcomes), i)
        charged.append(c)
    return Joint(True, tuple(outcomes), None)


def joint_check(limiter: Any, charges: Sequence[Charge]) -> Joint:
    """Checks ``charges`` (the global limit's first, then the route's) all
    or nothing: one ``limiter.check_keys`` call, or the two-step fallback
    described above. Errors other than the fallback's propagate."""
    steps = _joint_steps(charges)
    try:
        step = next(steps)
        while True:
            if step[0] == "keys":
                try:
                    result = limiter.check_keys(step[1], cost=step[2])
                except _tollgate.UnsupportedError as exc:
                    step = steps.throw(exc)
                    continue
            elif step[0] == "check":
                result = limiter.check(step[1], *step[2], cost=step[3])
            else:
                result = None
                try:
                    limiter.check(step[1], *step[2], cost=-step[3])
                except _tollgate.Error:
                    pass  # nothing to give back, or the store away
            step = steps.send(result)
    except StopIteration as stop:
        joint: Joint = stop.value
        return joint


async def joint_check_async(limiter: Any, charges: Sequence[Charge]) -> Joint:
    """:func:`joint_check` with ``check_keys_async`` and ``check_async``."""
    steps = _joint_steps(charges)
    try:
        step = next(steps)
        while True:
            if step[0] == "keys":
                try:
                    result = await limiter.check_keys_async(step[1], cost=step[2])
                except _tollgate.UnsupportedError as exc:
                    step = steps.throw(exc)
                    continue
            elif step[0] == "check":
                result = await limiter.check_async(step[1], *step[2], cost=step[3])
            else:
                result = None
                try:
                    await limiter.check_async(step[1], *step[2], cost=-step[3])
                except _tollgate.Error:
                    pass
            step = steps.send(result)
    except StopIteration as stop:
        joint: Joint = stop.value
        return joint
