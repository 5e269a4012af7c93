"""A guarded HTTP fetcher for the live-web browser.

Every url the agent opens comes from hostile content (a search result, a link on a page, a
redirect), so the fetcher treats it that way: only http(s); the host is resolved here and every
address checked (no loopback, private, link-local, multicast, reserved or unspecified address
unless the policy allows it); the connection goes to the exact address that was checked, so a
second DNS answer cannot swap in another one (DNS rebinding); redirects are followed by hand and
every hop is checked again; the body is streamed and cut at `max_bytes` (compressed bodies are
inflated in bounded steps, so a zip bomb is cut too); a wall-clock deadline covers the whole fetch.

Every failure is a `BrowserError` with a message the agent can read.

How the address is pinned: the transport is httpcore (httpx's own engine) with a network backend
of ours, `_PinnedBackend`, which only opens sockets to the addresses this module checked for the
host and holds every socket read, write and TLS handshake to the fetch's deadline (a server that
sends one byte at a time cannot stretch a fetch). The url keeps its host name, so the Host header
and TLS (SNI, certificate check) see the name, not the address.

Known limit: name resolution uses the system resolver in a helper thread; a resolver that hangs
is abandoned at the deadline, not cancelled.
"""
from __future__ import annotations

import codecs
import ipaddress
import os
import re
import socket
import ssl
import threading
import time
import zlib
from dataclasses import dataclass, field
from urllib.parse import urljoin

import httpcore
import httpx

from citeenv.backends import BrowserError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

HTML_TYPES = ("text/html", "application/xhtml+xml")
TEXT_TYPES = HTML_TYPES + ("text/plain",)
_REDIRECTS = (301, 302, 303, 307, 308)
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.?$")
_MAX_MESSAGE = 200  # keep server-controlled strings short in error messages


@dataclass
class FetchPolicy:
    connect_timeout: float = 5.0
    read_timeout: float = 10.0  # longest silence between two chunks
    total_timeout: float = 20.0  # wall clock for the whole fetch, redirects included
    max_bytes: int = 2_000_000  # decoded body size; the rest is never read
    max_redirects: int = 5
    content_types: tuple[str, ...] = TEXT_TYPES
    # Let loopback/private/link-local/reserved addresses through. Off by default: a page could
    # otherwise make the agent probe the machine's own services or the cloud metadata endpoint.
    allow_private: bool = False
    # "host" or "host:port" ("[::1]:8080" for IPv6) that may be non-public, matched against the
    # url's host and against the resolved address; e.g. a local search endpoint or a test server.
    allow_hosts: tuple[str, ...] = ()
    # When non-empty, only these hosts ("host" or "host:port") may be fetched at all, e.g. to keep
    # a locally served corpus from wandering onto the web through an off-corpus link.
    only_hosts: tuple[str, ...] = ()
    user_agent: str = "citeagent/0.1 (text browser for question answering)"
    # TLS verification: True (certifi's trust store, as httpx), a CA file or directory, or an ssl.SSLContext.
    verify: bool | str | ssl.SSLContext = True

    def __post_init__(self):
        self.content_types = tuple(t.lower() for t in self.content_types)
        self.allow_hosts = tuple(self.allow_hosts)
        self.only_hosts = tuple(self.only_hosts)


@dataclass
class Fetched:
    url: str  # the final url, after redirects
    status: int
    content_type: str  # media type, lower case, without parameters
    charset: str  # what the body was decoded with
    text: str
    truncated: bool = False  # the body was longer than max_bytes and was cut there
    redirects: list[str] = field(default_factory=list)  # the urls that redirected, in order


class Fetcher:
    def __init__(self, policy: FetchPolicy | None = None):
        self.policy = policy or FetchPolicy()
        self._allow = [_parse_host_port(h) for h in self.policy.allow_hosts]
        self._only = [_parse_host_port(h) for h in self.policy.only_hosts]
        self._ssl: ssl.SSLContext | None = None  # built on the first fetch (loading CAs takes a moment)

    def fetch(self, url: str, accept: tuple[str, ...] | None = None, deadline: float | None = None) -> Fetched:
        """GET url under the policy. `accept` overrides the policy's content types (e.g. JSON);
        `deadline` (time.monotonic()) ends the fetch earlier than the policy's total_timeout would,
        for a caller whose own step has a deadline."""
        p = self.policy
        accept = tuple(a.lower() for a in accept) if accept else p.content_types
        deadline = min(time.monotonic() + p.total_timeout, deadline if deadline is not None else float("inf"))
        backend = _PinnedBackend(deadline)
        if self._ssl is None:
            self._ssl = _ssl_context(p.verify)
        seen: set[str] = set()
        redirects: list[str] = []
        current = url
        with httpcore.ConnectionPool(ssl_context=self._ssl, network_backend=backend, retries=0) as pool:
            while True:
                target = self.check_url(current)
                seen.add(_without_fragment(str(target)))
                backend.pin(target, self.resolve_checked(target, deadline))
                response = self._send(pool, target, accept)
                try:
                    status = response.status
                    headers = _headers(response)
                    if status in _REDIRECTS:
                        nxt = _redirect_target(target, status, headers)
                        redirects.append(str(target))
                        if _without_fragment(nxt) in seen:
                            raise BrowserError(f"redirect loop: {_short(nxt)} was already visited")
                        if len(redirects) > p.max_redirects:
                            raise BrowserError(f"too many redirects (more than {p.max_redirects})")
                        current = nxt
                        continue
                    return self._read(response, status, headers, str(target), accept, redirects)
                finally:
                    response.close()

    # -- checks ------------------------------------------------------------------------------

    def check_url(self, url: str) -> httpx.URL:
        """Parse url and refuse anything that is not a well-formed http(s) url to an allowed host."""
        if not isinstance(url, str) or not url.strip():
            raise BrowserError("refused: empty url")
        if len(url) > 4096:
            raise BrowserError("refused: url longer than 4096 characters")
        try:
            u = httpx.URL(url.strip())
        except (httpx.InvalidURL, ValueError, TypeError) as e:
            raise BrowserError(f"refused: malformed url ({_short(str(e))})") from None
        if not u.scheme:
            raise BrowserError("refused: the url has no scheme; only http and https urls are opened")
        if u.scheme not in ("http", "https"):
            raise BrowserError(f"refused: {_short(u.scheme)} urls are not opened; only http and https")
        try:
            host = u.raw_host.decode("ascii").lower()
        except UnicodeDecodeError:
            raise BrowserError("refused: malformed host name") from None
        if not host:
            raise BrowserError("refused: the url has no host")
        if _ip(host) is None and not _HOSTNAME.match(host):
            raise BrowserError(f"refused: {_short(host)} is not a valid host name")
        if self._only and not any(_matches(rule, host, None, _port(u)) for rule in self._only):
            allowed = ", ".join(self.policy.only_hosts)
            raise BrowserError(f"refused: {_short(host)} is outside the allowed hosts ({allowed})")
        return u

    def resolve_checked(self, u: httpx.URL, deadline: float) -> list[IPAddress]:
        """The addresses of u's host, after refusing the host if any of them is not allowed.

        All answers must pass: a mixed answer (one public, one private) is a rebinding trick."""
        host = u.raw_host.decode("ascii").lower()
        port = _port(u)
        addresses = _resolve(host, port, deadline)
        for ip in addresses:
            problem = address_problem(ip)
            if problem is None or self._allowed(host, ip, port, problem):
                continue
            hint = "" if problem in ("multicast", "unspecified") else "; pass --allow-private to allow it"
            named = host if _ip(host) == ip else f"{host} resolves to {ip}, which"
            raise BrowserError(f"refused: {named} is {_article(problem)} {problem} address{hint}")
        return addresses

    def _allowed(self, host: str, ip: IPAddress, port: int, problem: str) -> bool:
        if any(_matches(rule, host, ip, port) for rule in self._allow):
            return True
        # allow_private opens up the machine's own networks, never multicast or "any" addresses.
        return self.policy.allow_private and problem not in ("multicast", "unspecified")

    # -- transfer ------------------------------------------------------------------------------

    def _send(self, pool: httpcore.ConnectionPool, u: httpx.URL, accept: tuple[str, ...]) -> httpcore.Response:
        """Send the GET and return the response with its body not yet read."""
        p = self.policy
        host = u.raw_host.decode("ascii")
        request = httpcore.Request(
            "GET",
            httpcore.URL(scheme=u.raw_scheme, host=u.raw_host, port=u.port, target=u.raw_path),
            headers=[(b"Host", _host_header(u).encode("ascii")),
                     (b"User-Agent", p.user_agent.encode("latin-1", "replace")),
                     (b"Accept", (", ".join(accept) + ", */*;q=0.1").encode("ascii", "replace")),
                     (b"Accept-Encoding", b"gzip, deflate")],
            extensions={"timeout": {"connect": p.connect_timeout, "read": p.read_timeout,
                                    "write": p.read_timeout, "pool": p.connect_timeout}},
        )
        try:
            return pool.handle_request(request)
        except httpcore.ConnectTimeout:
            raise BrowserError(f"timed out connecting to {_short(host)}") from None
        except httpcore.TimeoutException:
            raise BrowserError(f"timed out waiting for {_short(host)} to respond") from None
        except httpcore.ConnectError as e:
            raise BrowserError(f"could not connect to {_short(host)}: {_short(_reason(e))}") from None
        except (httpcore.NetworkError, httpcore.ProtocolError, OSError) as e:
            raise BrowserError(f"could not fetch from {_short(host)}: {_short(_reason(e))}") from None

    def _read(self, response: httpcore.Response, status: int, headers: dict[str, str], url: str,
              accept: tuple[str, ...], redirects: list[str]) -> Fetched:
        if status >= 400:
            reason = response.extensions.get("reason_phrase", b"").decode("latin-1")
            raise BrowserError(f"HTTP {status} {_short(reason)}".rstrip())
        if status >= 300:
            raise BrowserError(f"HTTP {status}: nothing to show")
        media_type, charset = parse_content_type(headers.get("content-type", ""))
        if media_type and media_type not in accept:
            raise BrowserError(f"refused: content type {_short(media_type)} is not shown; "
                               f"allowed: {', '.join(accept)}")
        body, truncated = self._read_body(response, headers.get("content-encoding", ""))
        if not media_type:
            media_type = sniff_media_type(body, accept)
        text, used = decode_body(body, charset, media_type)
        return Fetched(url, status, media_type, used, text, truncated, redirects)

    def _read_body(self, response: httpcore.Response, content_encoding: str) -> tuple[bytes, bool]:
        limit = self.policy.max_bytes
        inflate = _Inflater(content_encoding)
        out = bytearray()
        raw_size = 0
        try:
            for chunk in response.iter_stream():  # chunks as they arrive, never buffered up
                raw_size += len(chunk)
                out += inflate.feed(chunk, limit - len(out) + 1)
                # The raw count also bounds a stream that inflates to nothing.
                if len(out) > limit or raw_size > limit:
                    return bytes(out[:limit]), True
            out += inflate.flush(limit - len(out) + 1)
        except httpcore.TimeoutException:
            raise BrowserError("timed out while reading the page") from None
        except (httpcore.NetworkError, httpcore.ProtocolError, OSError) as e:
            raise BrowserError(f"the connection failed while reading: {_short(_reason(e))}") from None
        except zlib.error:
            raise BrowserError("the page's compressed body is corrupt") from None
        if len(out) > limit:
            return bytes(out[:limit]), True
        return bytes(out), False


class _PinnedBackend(httpcore.NetworkBackend):
    """Opens sockets only to the addresses the fetcher checked for a host, and holds every socket
    operation to the fetch's deadline."""

    def __init__(self, deadline: float):
        self.deadline = deadline
        self._pins: dict[tuple[str, int], list[IPAddress]] = {}
        self._inner = httpcore.SyncBackend()

    def pin(self, u: httpx.URL, addresses: list[IPAddress]) -> None:
        self._pins[(u.raw_host.decode("ascii").lower(), _port(u))] = addresses

    def limit(self, timeout: float | None) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise httpcore.ReadTimeout("the fetch ran out of time")
        return left if timeout is None else min(timeout, left)

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        addresses = self._pins.get((host.lower(), port))
        if not addresses:  # never reached through Fetcher.fetch; a last gate, not a code path
            raise httpcore.ConnectError(f"{host}:{port} was not checked before connecting")
        error: Exception = httpcore.ConnectError("no address")
        for ip in addresses:
            try:
                stream = self._inner.connect_tcp(str(ip), port, timeout=self.limit(timeout),
                                                 local_address=local_address, socket_options=socket_options)
                return _DeadlineStream(stream, self)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as e:
                error = e  # try the host's next address
        raise error

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise httpcore.ConnectError("unix sockets are not fetched")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, backend: _PinnedBackend):
        self._inner = inner
        self._backend = backend

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._backend.limit(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._backend.limit(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None):
        inner = self._inner.start_tls(ssl_context, server_hostname, self._backend.limit(timeout))
        return _DeadlineStream(inner, self._backend)

    def get_extra_info(self, info: str):
        return self._inner.get_extra_info(info)


def _ssl_context(verify: bool | str | ssl.SSLContext) -> ssl.SSLContext:
    try:
        if isinstance(verify, ssl.SSLContext):
            return verify
        if isinstance(verify, str):  # a CA bundle file or a directory of CA certificates
            if os.path.isdir(verify):
                return ssl.create_default_context(capath=verify)
            return ssl.create_default_context(cafile=verify)
        return httpx.create_ssl_context(verify=bool(verify), trust_env=False)  # certifi's store
    except (OSError, ssl.SSLError) as e:
        raise BrowserError(f"could not set up TLS: {_short(_reason(e))}") from None


def _headers(response: httpcore.Response) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in response.headers:
        out.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return out


# -- addresses --------------------------------------------------------------------------------

def address_problem(ip: IPAddress) -> str | None:
    """Why ip may not be fetched by default ("private", "loopback", ...), or None if it is public."""
    if isinstance(ip, ipaddress.IPv6Address):
        # An IPv6 form that carries an IPv4 address is judged by the IPv4 address inside.
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is None and ip in _IPV4_COMPAT and int(ip) > 1:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return address_problem(embedded)
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private:
        return "private"
    if not ip.is_global:
        return "non-public"  # e.g. 100.64.0.0/10 (carrier-grade NAT), documentation ranges
    return None


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPAT = ipaddress.IPv6Network("::/96")


def _ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _resolve(host: str, port: int, deadline: float) -> list[IPAddress]:
    literal = _ip(host)
    if literal is not None:
        return [literal]
    result: dict = {}

    def lookup():
        try:
            result["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as e:
            result["error"] = e

    # getaddrinfo has no time-out of its own; a hung lookup is left behind in a daemon thread.
    worker = threading.Thread(target=lookup, daemon=True, name="citeagent-dns")
    worker.start()
    worker.join(_time_left(deadline))
    if worker.is_alive():
        raise BrowserError(f"timed out looking up {host}")
    if "error" in result:
        raise BrowserError(f"could not find the address of {_short(host)}")
    addresses: list[IPAddress] = []
    for family, _, _, _, sockaddr in result.get("infos", []):
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        ip = ipaddress.ip_address(sockaddr[0].split("%")[0])
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise BrowserError(f"could not find the address of {_short(host)}")
    return addresses


def _parse_host_port(entry: str) -> tuple[str, int | None]:
    """("localhost", 8080) from "localhost:8080", ("::1", None) from "[::1]" or "::1"."""
    text = entry.strip().lower()
    host, port = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else rest
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not host or (port and not port.isdigit()):
        raise ValueError(f"bad host entry {entry!r}: use host, host:port or [ipv6]:port")
    return host.rstrip("."), int(port) if port else None


def _matches(rule: tuple[str, int | None], host: str, ip: IPAddress | None, port: int) -> bool:
    rule_host, rule_port = rule
    if rule_port is not None and rule_port != port:
        return False
    if rule_host == host.rstrip("."):
        return True
    rule_ip = _ip(rule_host)
    return rule_ip is not None and ip is not None and rule_ip == ip


def _port(u: httpx.URL) -> int:
    return u.port or (443 if u.scheme == "https" else 80)


def _host_header(u: httpx.URL) -> str:
    host = u.raw_host.decode("ascii")
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{u.port}" if u.port else host


def _time_left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise BrowserError("timed out: the fetch ran out of time")
    return left


# -- redirects --------------------------------------------------------------------------------

def _redirect_target(current: httpx.URL, status: int, headers: dict[str, str]) -> str:
    location = headers.get("location", "").strip()
    if not location:
        raise BrowserError(f"HTTP {status} redirect without a Location header")
    nxt = urljoin(str(current), location)
    if "#" not in nxt and current.fragment:
        nxt += "#" + current.fragment  # a redirect keeps the fragment unless it names its own
    try:
        return str(httpx.URL(nxt))  # the same spelling as the urls already seen
    except (httpx.InvalidURL, ValueError):
        return nxt  # check_url refuses it with a message


def _without_fragment(url: str) -> str:
    return url.split("#", 1)[0]


# -- bodies -----------------------------------------------------------------------------------

class _Inflater:
    """Content-Encoding decoding that never produces more than it is asked for in one step."""

    def __init__(self, encoding: str):
        encoding = encoding.strip().lower()
        if encoding in ("", "identity"):
            self._z = None
        elif encoding in ("gzip", "x-gzip"):
            self._z = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._z = zlib.decompressobj(wbits=zlib.MAX_WBITS)
            self._raw_deflate_tried = False
        else:
            raise BrowserError(f"refused: unsupported content encoding {_short(encoding)}")
        self.encoding = encoding
        self._pending = b""

    def feed(self, chunk: bytes, room: int) -> bytes:
        if self._z is None:
            return chunk
        data = self._pending + chunk
        try:
            out = self._z.decompress(data, max(room, 1))
        except zlib.error:
            # "deflate" is often sent as a raw stream without the zlib header.
            if self.encoding != "deflate" or self._raw_deflate_tried:
                raise
            self._raw_deflate_tried = True
            self._z = zlib.decompressobj(wbits=-zlib.MAX_WBITS)
            out = self._z.decompress(data, max(room, 1))
        # Input not consumed because the output was full waits for the next call; by then the
        # caller has usually stopped, so this is never inflated.
        self._pending = self._z.unconsumed_tail
        return out

    def flush(self, room: int) -> bytes:
        if self._z is None:
            return b""
        return self.feed(b"", room)


def parse_content_type(header: str) -> tuple[str, str | None]:
    """("text/html", "utf-8") from 'text/html; charset="UTF-8"'; ("", None) when absent."""
    parts = header.split(";")
    media_type = parts[0].strip().lower()
    charset = None
    for param in parts[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip("'\"").strip() or None
    return media_type, charset


def sniff_media_type(body: bytes, accept: tuple[str, ...]) -> str:
    """A media type for a body sent without one: binary data is refused, markup is HTML."""
    head = body[:1024]
    if b"\x00" in head and not head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise BrowserError("refused: the page has no content type and looks binary")
    lowered = head.lstrip().lower()
    guess = "text/html" if lowered.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<p", b"<div", b"<title")) else "text/plain"
    if guess not in accept:
        fallback = next((t for t in accept if t.startswith("text/")), None)
        if fallback is None:
            raise BrowserError(f"refused: the page has no content type; expected {', '.join(accept)}")
        guess = fallback
    return guess


# Labels that browsers decode as windows-1252, a superset that also covers the bytes 0x80-0x9f.
_WINDOWS_1252 = {"iso-8859-1", "iso8859-1", "latin1", "latin-1", "l1", "ascii", "us-ascii", "iso_8859-1", "cp819"}
# Codecs that are not character sets a page may use (UTF-7 is a classic filter-evasion trick).
_NOT_CHARSETS = {"utf_7", "unicode_escape", "raw_unicode_escape", "idna", "punycode", "undefined"}
_META_CHARSET = re.compile(rb"""<meta[^>]{0,512}?charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]{1,40})""", re.I)


def charset_codec(label: str | None) -> str | None:
    """The Python codec for a charset label from the page, or None if unknown or not allowed."""
    if not label:
        return None
    label = label.strip().lower()
    if label in _WINDOWS_1252:
        return "cp1252"
    try:
        info = codecs.lookup(label)
    except (LookupError, ValueError):
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name.replace("-", "_") in _NOT_CHARSETS:
        return None
    return info.name


def decode_body(body: bytes, declared: str | None, media_type: str) -> tuple[str, str]:
    """Decode a body: a byte-order mark wins, then the declared charset (header, then <meta> in
    HTML), then UTF-8 if the bytes are valid UTF-8, then windows-1252. Undecodable bytes become
    U+FFFD; this never raises."""
    for bom, codec in ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if body.startswith(bom):
            return body[len(bom):].decode(codec, errors="replace"), codec
    codec = charset_codec(declared)
    if codec is None and media_type in HTML_TYPES:
        m = _META_CHARSET.search(body[:4096])
        codec = charset_codec(m.group(1).decode("ascii")) if m else None
        if codec in ("utf-16", "utf_16", "utf-16-le", "utf-16-be", "utf_16_le", "utf_16_be"):
            codec = None  # a <meta> readable as ASCII cannot be UTF-16; browsers ignore it too
    if codec is not None:
        try:
            return body.decode(codec, errors="replace"), codec
        except (LookupError, ValueError, TypeError):
            pass  # a codec that fails on its own terms: fall back to detection
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return body.decode("cp1252", errors="replace"), "cp1252"


# -- messages ---------------------------------------------------------------------------------

def _short(s: str) -> str:
    s = "".join(ch if ch.isprintable() else "?" for ch in str(s))
    return s if len(s) <= _MAX_MESSAGE else s[:_MAX_MESSAGE] + "..."


def _reason(e: Exception) -> str:
    return str(e) or type(e).__name__


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"
