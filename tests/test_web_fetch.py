"""The guarded fetcher against real servers on 127.0.0.1, hostile ones included."""
from __future__ import annotations

import gzip
import ipaddress
import shutil
import ssl
import subprocess
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from citeenv.backends import BrowserError
from citeenv.web.fetch import Fetcher, FetchPolicy, address_problem, decode_body
from web_support import docs_server, network_guard, python_docs, raw_server, respond  # noqa: F401 (fixtures)

pytestmark = pytest.mark.usefixtures("network_guard")

# Short limits keep hostile cases quick; a test that breaks the guard fails instead of hanging.
QUICK = dict(connect_timeout=3.0, read_timeout=3.0, total_timeout=10.0)


def allowing(*hosts: str, **kw) -> Fetcher:
    return Fetcher(FetchPolicy(allow_hosts=hosts, **{**QUICK, **kw}))


def html_page(conn, method, path, server, body=b"<html><head><title>t</title></head><body><p>hello</p></body></html>"):
    respond(conn, 200, body, {"Content-Type": "text/html; charset=utf-8"})


# -- ordinary fetches ------------------------------------------------------------------------

def test_fetches_a_real_docs_page(docs_server):
    got = allowing(docs_server.host).fetch(docs_server.url("/library/json.html"))
    assert got.status == 200
    assert got.content_type == "text/html"
    assert got.charset == "utf-8"
    assert "<title>json — JSON encoder and decoder" in got.text
    assert got.text == (python_docs() / "library/json.html").read_text(encoding="utf-8")
    assert not got.truncated and got.redirects == []


def test_localhost_name_is_resolved_and_allow_listed_by_address(raw_server, network_guard):
    server = raw_server(html_page)
    got = allowing(server.host).fetch(f"http://localhost:{server.port}/x")
    assert "hello" in got.text
    assert got.url == f"http://localhost:{server.port}/x"
    assert network_guard == [("127.0.0.1", server.port)]  # connected to the address it checked


def test_http_error_status_is_a_browser_error(docs_server):
    with pytest.raises(BrowserError, match="HTTP 404"):
        allowing(docs_server.host).fetch(docs_server.url("/no/such/page.html"))


# -- refused addresses ----------------------------------------------------------------------

@pytest.mark.parametrize("url, kind", [
    ("http://10.0.0.1/", "private"),
    ("http://172.16.5.4:8080/", "private"),
    ("http://192.168.1.1/admin", "private"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://127.0.0.1/", "loopback"),
    ("http://127.1.2.3:22/", "loopback"),
    ("http://2130706433/", "loopback"),  # 127.0.0.1 written as one number
    ("http://localhost/", "loopback"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://224.0.0.1/", "multicast"),
    ("http://100.64.0.1/", "non-public"),
    ("http://240.0.0.1/", "reserved"),
    ("http://[::1]/", "loopback"),
    ("http://[::]/", "unspecified"),
    ("http://[fe80::1]/", "link-local"),
    ("http://[fc00::1]/", "private"),
    ("http://[ff02::1]/", "multicast"),
    ("http://[::ffff:10.0.0.1]/", "private"),  # IPv4-mapped IPv6
    ("http://[::ffff:127.0.0.1]:8080/", "loopback"),
    ("http://[2002:a9fe:a9fe::1]/", "link-local"),  # 6to4 around 169.254.169.254
    ("http://[64:ff9b::a00:1]/", "private"),  # NAT64 around 10.0.0.1
    ("https://192.168.0.10/", "private"),
    ("http://example.org@10.0.0.1/", "private"),  # the host is after the @
])
def test_non_public_addresses_are_refused_before_connecting(url, kind, network_guard):
    with pytest.raises(BrowserError) as e:
        Fetcher(FetchPolicy(**QUICK)).fetch(url)
    assert str(e.value).startswith("refused:")
    assert f"{kind} address" in str(e.value)
    assert network_guard == []


def test_refusal_message_says_how_to_allow():
    with pytest.raises(BrowserError, match=r"^refused: 10\.0\.0\.1 is a private address; pass --allow-private to allow it$"):
        Fetcher().fetch("http://10.0.0.1/")


def test_loopback_server_is_not_contacted_unless_allowed(raw_server):
    server = raw_server(html_page)
    with pytest.raises(BrowserError, match="loopback"):
        Fetcher(FetchPolicy(**QUICK)).fetch(server.url())
    assert server.connections == 0
    assert "hello" in Fetcher(FetchPolicy(allow_private=True, **QUICK)).fetch(server.url()).text
    assert server.connections == 1


def test_allow_private_still_refuses_unspecified_and_multicast(network_guard):
    fetcher = Fetcher(FetchPolicy(allow_private=True, **QUICK))
    for url in ("http://0.0.0.0/", "http://[::]/", "http://224.0.0.1/"):
        with pytest.raises(BrowserError, match="refused"):
            fetcher.fetch(url)
    assert network_guard == []


def test_allow_list_is_per_port(raw_server):
    allowed, other = raw_server(html_page), raw_server(html_page)
    fetcher = allowing(allowed.host)
    assert "hello" in fetcher.fetch(allowed.url()).text
    with pytest.raises(BrowserError, match="loopback"):
        fetcher.fetch(other.url())
    assert other.connections == 0


def test_only_hosts_keeps_fetches_on_the_listed_hosts(raw_server, network_guard):
    server = raw_server(html_page)
    fetcher = Fetcher(FetchPolicy(allow_hosts=(server.host,), only_hosts=(server.host,), **QUICK))
    assert "hello" in fetcher.fetch(server.url()).text
    with pytest.raises(BrowserError, match="outside the allowed hosts"):
        fetcher.fetch("https://www.python.org/")
    assert "www.python.org" not in network_guard and all(h == "127.0.0.1" for h, _ in network_guard)


@pytest.mark.parametrize("url", [
    "file:///etc/passwd", "ftp://ftp.debian.org/debian/", "gopher://example.org/", "javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>", "FILE:///etc/hosts", "/relative/path", "mailto:a@example.org",
])
def test_non_http_schemes_are_refused(url, network_guard):
    with pytest.raises(BrowserError, match="only http and https"):
        Fetcher().fetch(url)
    assert network_guard == []


@pytest.mark.parametrize("url", ["", "   ", "http://", "http:///path", "http://a b/", "http://[::1", "http://exa mple.org/",
                                 "http://" + "a" * 300 + ".org/", "http://x/" + "a" * 5000])
def test_malformed_urls_are_refused(url, network_guard):
    with pytest.raises(BrowserError, match="refused"):
        Fetcher().fetch(url)
    assert network_guard == []


def test_bad_allow_list_entry_is_a_clear_config_error():
    with pytest.raises(ValueError, match="host:port"):
        Fetcher(FetchPolicy(allow_hosts=("localhost:http",)))


# -- redirects ------------------------------------------------------------------------------

def redirect_router(routes: dict):
    def handle(conn, method, path, server):
        target = routes.get(path)
        if target is None:
            html_page(conn, method, path, server)
        else:
            respond(conn, 302, b"", {"Location": target}, reason="Found")
    return handle


def test_redirects_are_followed_and_reported(raw_server):
    server = raw_server(redirect_router({"/a": "/b", "/b": "c"}))
    got = allowing(server.host).fetch(server.url("/a"))
    assert got.url == server.url("/c")
    assert got.redirects == [server.url("/a"), server.url("/b")]
    assert "hello" in got.text


def test_redirect_loop_is_detected(raw_server):
    server = raw_server(redirect_router({"/a": "/b", "/b": "/a"}))
    with pytest.raises(BrowserError, match="redirect loop"):
        allowing(server.host).fetch(server.url("/a"))
    assert server.paths == ["/a", "/b"]


def test_redirect_to_itself_is_a_loop(raw_server):
    server = raw_server(redirect_router({"/self": "/self"}))
    with pytest.raises(BrowserError, match="redirect loop"):
        allowing(server.host).fetch(server.url("/self"))


def test_too_many_redirects(raw_server):
    chain = {f"/r{i}": f"/r{i + 1}" for i in range(10)}
    server = raw_server(redirect_router(chain))
    fetcher = allowing(server.host, max_redirects=3)
    with pytest.raises(BrowserError, match=r"too many redirects \(more than 3\)"):
        fetcher.fetch(server.url("/r0"))
    assert server.paths == ["/r0", "/r1", "/r2", "/r3"]
    assert "hello" in fetcher.fetch(server.url("/r7")).text  # exactly 3 redirects is fine


def test_redirect_to_a_private_address_is_refused_before_connecting(raw_server, network_guard):
    server = raw_server(redirect_router({"/go": "http://10.1.2.3/internal", "/meta": "http://169.254.169.254/"}))
    fetcher = allowing(server.host)
    with pytest.raises(BrowserError, match=r"refused: 10\.1\.2\.3 is a private address"):
        fetcher.fetch(server.url("/go"))
    with pytest.raises(BrowserError, match="link-local"):
        fetcher.fetch(server.url("/meta"))
    assert {h for h, _ in network_guard} == {"127.0.0.1"}
    assert all(port == server.port for _, port in network_guard)


def test_redirect_to_a_loopback_server_that_is_not_allowed(raw_server):
    hidden = raw_server(html_page)
    server = raw_server(redirect_router({"/go": hidden.url("/secret")}))
    with pytest.raises(BrowserError, match="loopback"):
        allowing(server.host).fetch(server.url("/go"))
    assert hidden.connections == 0


def test_redirect_to_another_scheme_is_refused(raw_server):
    server = raw_server(redirect_router({"/f": "file:///etc/passwd", "/j": "javascript:alert(1)"}))
    for path in ("/f", "/j"):
        with pytest.raises(BrowserError, match="only http and https"):
            allowing(server.host).fetch(server.url(path))


def test_redirect_without_location(raw_server):
    server = raw_server(lambda conn, m, p, s: respond(conn, 301, b"", reason="Moved"))
    with pytest.raises(BrowserError, match="without a Location"):
        allowing(server.host).fetch(server.url())


# -- size and time bounds -------------------------------------------------------------------

# The hostile servers below give up after a while (far past the limits under test), so a broken
# guard makes its test fail rather than run for hours.

def endless(conn, method, path, server):
    """Claims a gigabyte and streams it (25 MB, in fact) until the client hangs up."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 1073741824\r\n\r\n<html><body><p>")
    block = b"all work and no play " * 3000
    for _ in range(400):
        conn.sendall(block)


def test_endless_response_is_cut_at_max_bytes(raw_server):
    server = raw_server(endless)
    got = allowing(server.host, max_bytes=200_000).fetch(server.url())
    assert got.truncated
    assert len(got.text) == 200_000
    assert got.text.startswith("<html><body><p>all work")
    assert server.client_gone.wait(10), "the fetcher should hang up instead of reading on"


def test_endless_chunked_response_is_cut(raw_server):
    def chunked(conn, method, path, server):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 8192
        for _ in range(3000):
            conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))

    server = raw_server(chunked)
    got = allowing(server.host, max_bytes=100_000).fetch(server.url())
    assert got.truncated and got.text == "x" * 100_000
    assert server.client_gone.wait(10)


def test_gzip_bomb_is_cut_at_max_bytes(raw_server):
    def bomb(conn, method, path, server):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Encoding: gzip\r\n\r\n")
        z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        zeros = b"0" * (1 << 20)
        for _ in range(300):  # ~1 KB on the wire per MB once inflated: 300 MB from ~300 KB
            conn.sendall(z.compress(zeros))

    server = raw_server(bomb)
    got = allowing(server.host, max_bytes=300_000).fetch(server.url())
    assert got.truncated and got.text == "0" * 300_000
    assert server.client_gone.wait(10)


def test_compressed_page_is_inflated(raw_server):
    body = gzip.compress("<p>caf\u00e9 compressed</p>".encode("utf-8"))
    server = raw_server(lambda c, m, p, s: respond(c, 200, body, {"Content-Type": "text/html; charset=utf-8",
                                                                  "Content-Encoding": "gzip"}))
    got = allowing(server.host).fetch(server.url())
    assert got.text == "<p>caf\u00e9 compressed</p>" and not got.truncated


def test_unknown_content_encoding_is_refused(raw_server):
    server = raw_server(lambda c, m, p, s: respond(c, 200, b"\x00\x01", {"Content-Type": "text/html", "Content-Encoding": "br"}))
    with pytest.raises(BrowserError, match="unsupported content encoding br"):
        allowing(server.host).fetch(server.url())


def test_slow_loris_body_hits_the_total_deadline(raw_server):
    def drip(conn, method, path, server):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 200\r\n\r\n")
        for _ in range(200):  # 10 s in all, each byte well inside the read time-out
            conn.sendall(b"a")
            if server.stop.wait(0.05):
                return

    server = raw_server(drip)
    with pytest.raises(BrowserError, match="timed out"):
        allowing(server.host, read_timeout=2.0, total_timeout=1.0).fetch(server.url())
    assert server.client_gone.wait(10)


def test_slow_loris_headers_hit_the_total_deadline(raw_server):
    def drip_headers(conn, method, path, server):
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        for _ in range(200):
            conn.sendall(b"X-Pad: a\r\n")
            if server.stop.wait(0.05):
                return
        conn.sendall(b"Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")

    server = raw_server(drip_headers)
    with pytest.raises(BrowserError, match="timed out"):
        allowing(server.host, read_timeout=2.0, total_timeout=1.0).fetch(server.url())


def test_silent_server_hits_the_read_timeout(raw_server):
    server = raw_server(lambda conn, m, p, s: s.stop.wait(30))
    with pytest.raises(BrowserError, match="timed out"):
        allowing(server.host, read_timeout=0.5).fetch(server.url())


def test_deadline_covers_a_chain_of_slow_redirects(raw_server):
    def slow_redirects(conn, method, path, server):
        server.stop.wait(0.4)
        respond(conn, 302, b"", {"Location": f"/n{len(server.paths)}"}, reason="Found")

    server = raw_server(slow_redirects)
    with pytest.raises(BrowserError, match="timed out"):
        allowing(server.host, max_redirects=50, total_timeout=1.0).fetch(server.url("/start"))
    assert len(server.paths) < 50


# -- content types and charsets -------------------------------------------------------------

@pytest.mark.parametrize("ctype", ["application/octet-stream", "image/png", "application/pdf", "video/mp4",
                                   "application/javascript", "text/css"])
def test_non_text_content_types_are_refused_unread(ctype, raw_server):
    png = next(python_docs().glob("_images/*.png")).read_bytes()

    def binary(conn, method, path, server):
        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: 1073741824\r\n\r\n".encode())
        for _ in range(20_000_000 // len(png)):
            conn.sendall(png)

    server = raw_server(binary)
    with pytest.raises(BrowserError, match=f"refused: content type {ctype} is not shown"):
        allowing(server.host).fetch(server.url())
    assert server.client_gone.wait(10)


def test_missing_content_type_with_binary_body_is_refused(raw_server):
    png = next(python_docs().glob("_images/*.png")).read_bytes()
    server = raw_server(lambda c, m, p, s: respond(c, 200, png))
    with pytest.raises(BrowserError, match="looks binary"):
        allowing(server.host).fetch(server.url())


def test_missing_content_type_with_markup_is_html(raw_server):
    server = raw_server(lambda c, m, p, s: respond(c, 200, b"<!DOCTYPE html><html><p>hi</p></html>"))
    assert allowing(server.host).fetch(server.url()).content_type == "text/html"


def serve_bytes(raw_server, body: bytes, ctype: str):
    server = raw_server(lambda c, m, p, s: respond(c, 200, body, {"Content-Type": ctype}))
    return allowing(server.host).fetch(server.url())


def test_declared_latin1_is_decoded(raw_server):
    got = serve_bytes(raw_server, "<p>Caf\u00e9 na\u00efve \u00bd</p>".encode("latin-1"), "text/html; charset=ISO-8859-1")
    assert got.text == "<p>Caf\u00e9 na\u00efve \u00bd</p>"


def test_undeclared_latin1_falls_back_from_utf8(raw_server):
    got = serve_bytes(raw_server, "<p>Caf\u00e9 \u2013 \u201cquoted\u201d</p>".encode("cp1252"), "text/html")
    assert got.text == "<p>Caf\u00e9 \u2013 \u201cquoted\u201d</p>"
    assert got.charset == "cp1252"


def test_meta_charset_is_used_when_the_header_has_none(raw_server):
    body = '<html><head><meta charset="iso-8859-15"></head><p>\u20ac 5</p></html>'.encode("iso-8859-15")
    assert "\u20ac 5" in serve_bytes(raw_server, body, "text/html").text


def test_bytes_invalid_in_the_declared_charset_become_replacement_characters(raw_server):
    got = serve_bytes(raw_server, b"<p>ok \xff\xfe\xc3\x28 \xe2\x82 end</p>", "text/html; charset=utf-8")
    assert got.text.startswith("<p>ok ") and got.text.endswith(" end</p>")
    assert "\ufffd" in got.text


@pytest.mark.parametrize("charset", ["x-no-such-charset", "utf-7", "base64", "zlib", "rot13", "unicode_escape", ""])
def test_bogus_or_dangerous_charsets_are_ignored(charset, raw_server):
    body = "<p>+ADw-script+AD4- caf\u00e9 \\x41</p>".encode("utf-8")
    got = serve_bytes(raw_server, body, f"text/html; charset={charset}")
    assert got.text == "<p>+ADw-script+AD4- caf\u00e9 \\x41</p>"
    assert got.charset == "utf-8"


def test_utf16_with_bom(raw_server):
    body = "<p>\u65e5\u672c\u8a9e</p>".encode("utf-16")  # Python writes the byte-order mark first
    assert serve_bytes(raw_server, body, "text/html").text == "<p>\u65e5\u672c\u8a9e</p>"


def test_decode_body_never_raises_on_random_bytes():
    data = bytes(range(256)) * 4
    for declared in (None, "utf-8", "shift_jis", "utf-16", "utf-32", "iso-2022-jp", "gb18030", "big5", "koi8-r"):
        text, used = decode_body(data, declared, "text/html")
        assert isinstance(text, str) and used


def test_json_is_refused_for_pages_but_fetched_when_asked_for(raw_server):
    server = raw_server(lambda c, m, p, s: respond(c, 200, b'{"a": 1}', {"Content-Type": "application/json"}))
    fetcher = allowing(server.host)
    with pytest.raises(BrowserError, match="content type application/json"):
        fetcher.fetch(server.url())
    assert fetcher.fetch(server.url(), accept=("application/json",)).text == '{"a": 1}'


# -- addresses as data ----------------------------------------------------------------------

@pytest.mark.parametrize("address, problem", [
    ("8.8.8.8", None), ("1.1.1.1", None), ("2606:4700:4700::1111", None), ("::ffff:8.8.8.8", None),
    ("10.255.255.255", "private"), ("172.31.0.1", "private"), ("172.32.0.1", None), ("192.168.0.1", "private"),
    ("127.255.255.254", "loopback"), ("169.254.0.1", "link-local"), ("0.0.0.0", "unspecified"),
    ("255.255.255.255", "reserved"), ("::1", "loopback"), ("fe80::abcd", "link-local"), ("fd12:3456::1", "private"),
    ("::ffff:192.168.1.1", "private"), ("::ffff:169.254.169.254", "link-local"), ("2001:db8::1", "private"),
    ("::10.0.0.1", "private"),
])
def test_address_classification(address, problem):
    assert address_problem(ipaddress.ip_address(address)) == problem


# -- TLS --------------------------------------------------------------------------------------

@pytest.fixture
def tls_server(tmp_path):
    """An HTTPS server on 127.0.0.1 with a fresh self-signed certificate for "localhost"."""
    if shutil.which("openssl") is None:
        pytest.fail("The TLS tests need the openssl command: `apt-get install -y openssl`.", pytrace=False)
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)

    class Page(BaseHTTPRequestHandler):
        def do_GET(self):
            body = f"<p>secure hello; host header {self.headers['Host']}</p>".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    httpd.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield httpd.server_address[1], str(cert)
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def test_https_checks_the_certificate_against_the_host_name(tls_server, network_guard):
    port, cafile = tls_server
    fetcher = Fetcher(FetchPolicy(allow_hosts=("localhost",), verify=cafile, **QUICK))
    got = fetcher.fetch(f"https://localhost:{port}/page")
    assert got.text == f"<p>secure hello; host header localhost:{port}</p>"
    assert network_guard == [("127.0.0.1", port)]  # the pinned address, with TLS for the name


def test_https_with_an_untrusted_certificate_fails_cleanly(tls_server):
    port, _ = tls_server
    fetcher = Fetcher(FetchPolicy(allow_hosts=("localhost",), **QUICK))  # default trust store
    with pytest.raises(BrowserError, match="could not connect to localhost"):
        fetcher.fetch(f"https://localhost:{port}/")


def test_https_certificate_for_another_name_fails(tls_server):
    port, cafile = tls_server
    fetcher = Fetcher(FetchPolicy(allow_hosts=("127.0.0.1",), verify=cafile, **QUICK))
    with pytest.raises(BrowserError, match="could not connect"):
        fetcher.fetch(f"https://127.0.0.1:{port}/")
