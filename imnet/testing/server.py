"""A real HTTP server on 127.0.0.1 standing in for the internet in tests: plain files (the torch hub
URLs, a mirror) and the part of the Hugging Face hub protocol ``hf_hub_download`` uses.

``hf_hub_download`` sends ``HEAD <endpoint>/<org>/<repo>/resolve/<revision>/<file>`` and needs
``X-Repo-Commit`` (the commit id), ``ETag`` (the blob's SHA-256 for LFS files) and
``Content-Length``; then it GETs the same URL, with ``Range: bytes=N-`` when it resumes. A missing
file answers 404 with ``X-Error-Code: EntryNotFound``, a missing repo ``RepoNotFound``, as the hub does.

Faults on request: ``cut(path, after_bytes, times)`` closes the connection mid-file, ``status(path,
code)`` answers an error, ``throttle`` slows every body down (so a process can be killed mid-file).
Every request is logged (method, path, Range header) in ``requests``.
"""
from __future__ import annotations

import hashlib
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Request:
    method: str
    path: str
    range: str | None


@dataclass
class _Hub:
    commit: str
    files: dict[str, bytes] = field(default_factory=dict)
    etags: dict[str, str] = field(default_factory=dict)


class WeightsServer:
    """``with WeightsServer() as server: server.add("/models/x.pth", data); server.url + "/models/x.pth"``."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.hubs: dict[str, _Hub] = {}
        self.requests: list[Request] = []
        self._cuts: dict[str, list[int]] = {}
        self._status: dict[str, int] = {}
        self.throttle: tuple[int, float] | None = None  # (bytes per chunk, seconds between chunks)
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- content ----------------------------------------------------------------------------------
    def add(self, path: str, data: bytes) -> str:
        """Serve ``data`` at ``path`` (starting with ``/``); returns its full URL."""
        self.files[path] = data
        return self.url + path

    def add_hub(self, hub_id: str, filename: str, data: bytes, etag: str | None = None) -> None:
        """Serve ``data`` as ``filename`` of hub repo ``hub_id`` (``org/name``); ``etag`` overrides
        the SHA-256 the server reports (to test a hub file that fails its check)."""
        hub = self.hubs.setdefault(hub_id, _Hub(hashlib.sha1(hub_id.encode()).hexdigest()))
        hub.files[filename] = data
        hub.etags[filename] = etag or hashlib.sha256(data).hexdigest()

    def add_hub_repo(self, hub_id: str) -> None:
        """A hub repo with no weights files (its files answer EntryNotFound)."""
        self.hubs.setdefault(hub_id, _Hub(hashlib.sha1(hub_id.encode()).hexdigest()))

    def cut(self, path: str, after_bytes: int, times: int = 1) -> None:
        """The next ``times`` GETs of ``path`` send ``after_bytes`` of the body, then close."""
        self._cuts[path] = [after_bytes] * times

    def status(self, path: str, code: int) -> None:
        """Answer ``code`` (and no body) for ``path``."""
        self._status[path] = code

    def gets(self, path: str | None = None) -> list[Request]:
        """The GET requests received (for ``path`` only, when given)."""
        return [r for r in self.requests if r.method == "GET" and (path is None or r.path == path)]

    # --- running ----------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> "WeightsServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:
                server._answer(self, body=False)

            def do_GET(self) -> None:
                server._answer(self, body=True)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "WeightsServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- answering --------------------------------------------------------------------------------
    def _find(self, path: str) -> tuple[int, bytes | None, dict[str, str]]:
        if path in self._status:
            return self._status[path], None, {}
        if path in self.files:
            return 200, self.files[path], {}
        hub = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if hub is not None:
            repo = self.hubs.get(hub.group(1))
            if repo is None:
                return 404, None, {"X-Error-Code": "RepoNotFound"}
            headers = {"X-Repo-Commit": repo.commit}
            name = hub.group(3)
            if name not in repo.files:
                return 404, None, {**headers, "X-Error-Code": "EntryNotFound"}
            return 200, repo.files[name], {**headers, "ETag": f'"{repo.etags[name]}"'}
        return 404, None, {}

    def _answer(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        path = handler.path.split("?", 1)[0]
        range_header = handler.headers.get("Range")
        with self._lock:
            self.requests.append(Request(handler.command, path, range_header))
        code, data, headers = self._find(path)
        if data is None:
            handler.send_response(code)
            for key, value in headers.items():
                handler.send_header(key, value)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        start = 0
        if range_header:
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", range_header.strip())
            if match is None or int(match.group(1)) >= len(data):
                handler.send_response(416)
                handler.send_header("Content-Range", f"bytes */{len(data)}")
                handler.send_header("Content-Length", "0")
                handler.end_headers()
                return
            start = int(match.group(1))
            end = int(match.group(2)) + 1 if match.group(2) else len(data)
            handler.send_response(206)
            handler.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
            payload = data[start:end]
        else:
            handler.send_response(200)
            payload = data
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header("Accept-Ranges", "bytes")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        if not body:
            return
        limit = len(payload)
        with self._lock:
            cuts = self._cuts.get(path)
            if cuts:
                limit = min(limit, cuts.pop(0))
        self._send(handler, payload[:limit])
        if limit < len(payload):
            handler.close_connection = True
            try:
                handler.wfile.flush()
                handler.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _send(self, handler: BaseHTTPRequestHandler, payload: bytes) -> None:
        step, pause = self.throttle or (len(payload) or 1, 0.0)
        try:
            for i in range(0, len(payload), step):
                handler.wfile.write(payload[i:i + step])
                if pause:
                    handler.wfile.flush()
                    time.sleep(pause)
        except (BrokenPipeError, ConnectionResetError):
            pass


def refused_url(path: str = "/") -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"
