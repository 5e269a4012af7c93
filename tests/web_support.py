"""Shared pieces of the env/web tests: the loopback-only network guard, real servers on
127.0.0.1, and the Debian python3.11-doc pages used as real HTML."""
from __future__ import annotations

import functools
import ipaddress
import re
import socket
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

PYTHON_DOCS = Path("/usr/share/doc/python3.11/html")


def python_docs() -> Path:
    """The python3.11-doc HTML tree; fails the test (never skips) when it is not installed."""
    if not (PYTHON_DOCS / "library" / "json.html").is_file():
        pytest.fail(
            f"The real HTML pages these tests render are missing ({PYTHON_DOCS}). Install them with "
            "`apt-get install -y python3.11-doc` (the Makefile's test setup does this).",
            pytrace=False,
        )
    return PYTHON_DOCS


# -- network guard ------------------------------------------------------------------------------
# An audit hook sees every socket connect and name lookup in this process. While a web test runs
# it records them and stops (raises) any that would leave the machine, so a bug in the guard under
# test fails the test instead of sending traffic out, and tests can assert that a refused url was
# refused before any connection was attempted.

class NetworkViolation(RuntimeError):
    pass


_guard = {"active": False, "connects": [], "lookups": []}
_NUMERIC_HOST = re.compile(r"^[0-9.]+$")


def _audit(event: str, args) -> None:
    if not _guard["active"]:
        return
    if event == "socket.connect":
        sock, address = args
        if getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6):
            return
        host = str(address[0]).split("%")[0]
        _guard["connects"].append((host, address[1]))
        if not ipaddress.ip_address(host).is_loopback:
            raise NetworkViolation(f"test tried to connect to {host}:{address[1]}; only loopback is allowed")
    elif event == "socket.getaddrinfo":
        host = args[0]
        host = host.decode() if isinstance(host, bytes) else str(host)
        _guard["lookups"].append(host)
        if host != "localhost" and not _NUMERIC_HOST.match(host) and not _is_ip(host):
            raise NetworkViolation(f"test tried to look up {host!r}; only localhost and literals are allowed")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%")[0])
        return True
    except ValueError:
        return False


if not getattr(sys, "_citeagent_web_audit", False):
    sys.addaudithook(_audit)  # hooks cannot be removed; the flag makes it inert outside web tests
    sys._citeagent_web_audit = True


@pytest.fixture
def network_guard():
    """Yields the list of (host, port) connects made during the test."""
    _guard["connects"].clear()
    _guard["lookups"].clear()
    _guard["active"] = True
    try:
        yield _guard["connects"]
    finally:
        _guard["active"] = False


# -- servers ------------------------------------------------------------------------------------

class RawServer:
    """A TCP server on 127.0.0.1 that gives each connection, after its request head is read, to
    handle(conn, method, path, server). For hostile behaviour an HTTP library would not produce."""

    def __init__(self, handle):
        self.handle = handle
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.paths: list[str] = []
        self.stop = threading.Event()
        self.client_gone = threading.Event()  # a send failed because the client closed
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._loop, daemon=True)
        self._accept.start()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _loop(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed by close()
                return
            self.connections += 1
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                data = conn.recv(4096)
                if not data:
                    return
                head += data
            method, path = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")[:2]
            self.paths.append(path)
            self.handle(conn, method, path, self)
        except (BrokenPipeError, ConnectionResetError):
            self.client_gone.set()
        except (OSError, ValueError):
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        self.sock.close()
        self._accept.join(timeout=5)
        for t in self._threads:
            t.join(timeout=5)


def respond(conn: socket.socket, status: int = 200, body: bytes = b"", headers: dict | None = None,
            reason: str = "OK") -> None:
    lines = [f"HTTP/1.1 {status} {reason}"]
    headers = dict(headers or {})
    headers.setdefault("Content-Length", str(len(body)))
    headers.setdefault("Connection", "close")
    lines += [f"{k}: {v}" for k, v in headers.items()]
    conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)


@pytest.fixture
def raw_server():
    """Factory: raw_server(handle) -> a started RawServer, closed after the test."""
    servers: list[RawServer] = []

    def start(handle) -> RawServer:
        server = RawServer(handle)
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.close()


class _QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, format, *args) -> None:
        pass


class StaticServer:
    """The standard library's file server over a directory, on 127.0.0.1."""

    def __init__(self, directory: Path):
        handler = functools.partial(_QuietFiles, directory=str(directory))
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def docs_server():
    server = StaticServer(python_docs())
    yield server
    server.close()
