"""A small fake Hugging Face Hub on 127.0.0.1 that huggingface_hub downloads from.

It answers the calls ``model_info`` and ``hf_hub_download`` make: the repository listing
(``GET /api/models/{repo}/revision/{rev}``, sizes and hashes of every file), ``HEAD`` and ``GET
/{repo}/resolve/{rev}/{path}`` with the headers huggingface_hub reads (``X-Repo-Commit``, ``ETag``,
``Content-Length``), and, as the real Hub does for large (LFS) files, a redirect to a "CDN" on
another origin with ``X-Linked-Size`` and ``X-Linked-Etag`` (the sha256) on the redirect itself.
``GET`` honours ``Range``. Faults on demand: wrong bytes, a connection dropped mid-file, a transfer
that stalls after part of a file, a transfer that pauses after part of a file until the test has
done something (killed the client, say), and (:class:`SilentServer`) an endpoint that accepts and
never answers.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def is_lfs(path: str) -> bool:
    return not path.endswith((".json", ".md"))


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class FakeHub:
    repos: dict[str, dict[str, bytes]]
    url: str = ""
    cdn_url: str = ""
    # (method, server "hub"/"cdn", path, Range header, Authorization header)
    requests: list[tuple[str, str, str, str | None, str | None]] = field(default_factory=list)
    # path in repo -> bytes to send instead of the real content (a broken mirror)
    serve_instead: dict[str, bytes] = field(default_factory=dict)
    # path in repo -> send only this many bytes of the next GET, then drop the connection
    interrupt_once: dict[str, int] = field(default_factory=dict)
    # path in repo -> send this many bytes of the first GET, then go silent; later GETs get no answer
    stall_after: dict[str, int] = field(default_factory=dict)
    # path in repo -> send this many bytes of the next GET, set `paused`, and wait (until stop()) before
    # closing the connection; later GETs are answered in full
    pause_once: dict[str, int] = field(default_factory=dict)
    paused: threading.Event = field(default_factory=threading.Event)
    # the listing answers with this instead of the Hub's JSON (a proxy's login page)
    listing_instead: bytes | None = None
    release: threading.Event = field(default_factory=threading.Event)
    _servers: list = field(default_factory=list)

    def body_gets(self) -> list[tuple[str, str, str | None]]:
        """File downloads (GET of file content) as (server, path, Range), not listings or HEAD calls."""
        return [(r[1], r[2], r[3]) for r in self.requests if r[0] == "GET" and not r[2].startswith("/api/")]

    def find(self, url_path: str) -> tuple[str, str] | None:
        """(repo, path) for /{repo}/resolve/{rev}/{path} or /cdn/{repo}/{path}."""
        for repo in self.repos:
            for prefix in (f"/{repo}/resolve/{COMMIT}/", f"/{repo}/resolve/main/", f"/cdn/{repo}/"):
                if url_path.startswith(prefix):
                    return repo, url_path[len(prefix):]
        return None

    def start(self) -> "FakeHub":
        for role in ("hub", "cdn"):
            server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, role))
            server.daemon_threads = True
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
            thread.start()
            self._servers.append((server, thread))
            url = f"http://127.0.0.1:{server.server_address[1]}"
            if role == "hub":
                self.url = url
            else:
                self.cdn_url = url
        return self

    def stop(self) -> None:
        self.release.set()
        for server, thread in self._servers:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)


def _handler(hub: FakeHub, role: str):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

        def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _listing(self, repo: str) -> None:
            siblings = []
            for path, data in hub.repos[repo].items():
                entry = {"rfilename": path, "size": len(data), "blobId": git_sha1(data)}
                if is_lfs(path):
                    entry["lfs"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "pointerSize": 130}
                siblings.append(entry)
            body = json.dumps({
                "_id": "0" * 24, "id": repo, "modelId": repo, "author": repo.split("/")[0], "sha": COMMIT,
                "private": False, "disabled": False, "gated": False, "downloads": 0, "likes": 0, "tags": [],
                "createdAt": "2025-03-20T00:00:00.000Z", "lastModified": "2025-03-20T00:00:00.000Z",
                "siblings": siblings,
            }).encode()
            if hub.listing_instead is not None:
                return self._send(200, hub.listing_instead, {"Content-Type": "text/html"})
            self._send(200, body, {"Content-Type": "application/json"})

        def _record(self, method: str, path: str) -> None:
            hub.requests.append((method, role, path, self.headers.get("Range"), self.headers.get("Authorization")))

        def do_HEAD(self) -> None:
            self._file(head=True)

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            for repo in hub.repos:
                if role == "hub" and path in (f"/api/models/{repo}/revision/main", f"/api/models/{repo}"):
                    self._record("GET", path)
                    return self._listing(repo)
            self._file(head=False)

        def _file(self, head: bool) -> None:
            path = self.path.split("?")[0]
            self._record("HEAD" if head else "GET", path)
            found = hub.find(path)
            if found is None or found[1] not in hub.repos[found[0]] or path.startswith("/cdn/") != (role == "cdn"):
                return self._send(404, b"not found", {"X-Error-Code": "EntryNotFound"}, head)
            repo, name = found
            data = hub.repos[repo][name]
            lfs = is_lfs(name)
            sha = hashlib.sha256(data).hexdigest()
            common = {"X-Repo-Commit": COMMIT, "Accept-Ranges": "bytes"}
            if lfs and role == "hub":
                # Large files: the Hub redirects to its CDN and names the real size and hash.
                return self._send(302, b"", {**common, "Location": f"{hub.cdn_url}/cdn/{repo}/{name}",
                                             "X-Linked-Size": str(len(data)), "X-Linked-Etag": f'"{sha}"',
                                             "ETag": '"pointer-etag"'}, head)
            body = hub.serve_instead.get(name, data)
            headers = {**common, "ETag": f'"{sha if lfs else git_sha1(data)}"'}
            start = 0
            rng = self.headers.get("Range")
            if rng and not head:
                start = int(rng.split("=")[1].split("-")[0])
                if start >= len(body):
                    return self._send(416, b"", {"Content-Range": f"bytes */{len(body)}"})
                headers["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
            part = body[start:]
            if not head and name in hub.stall_after:
                return self._stall(name, part, headers, rng)
            if not head and name in hub.pause_once:
                return self._pause(hub.pause_once.pop(name), part, headers, rng)
            cut = None if head else hub.interrupt_once.pop(name, None)
            if cut is None:
                return self._send(206 if rng and not head else 200, part, headers, head)
            self._start(206 if rng else 200, headers, len(part))
            self.wfile.write(part[:cut])
            self.wfile.flush()
            time.sleep(0.3)  # let the client take in what came before the line drops
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)

        def _start(self, status: int, headers: dict, length: int) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(length))
            self.end_headers()

        def _stall(self, name: str, part: bytes, headers: dict, rng: str | None) -> None:
            sent = hub.stall_after.pop(name, None)
            hub.stall_after[name] = 0  # every later request for it gets no answer at all
            if sent:
                self._start(206 if rng else 200, headers, len(part))
                self.wfile.write(part[:sent])
                self.wfile.flush()
            hub.release.wait(timeout=300)
            self.close_connection = True

        def _pause(self, sent: int, part: bytes, headers: dict, rng: str | None) -> None:
            self._start(206 if rng else 200, headers, len(part))
            self.wfile.write(part[:sent])
            self.wfile.flush()
            hub.paused.set()
            hub.release.wait(timeout=300)
            self.close_connection = True

    return Handler


class SilentServer:
    """Accepts connections and never answers (a captive proxy, a stuck mirror)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        for conn in self.accepted:
            conn.close()
        self.sock.close()


@contextmanager
def serving(monkeypatch, repos: dict):
    """A FakeHub of ``repos`` as the HF_ENDPOINT of the test (no proxy, online, no token, no progress bars)."""
    fake = FakeHub(repos).start()
    monkeypatch.setenv("HF_ENDPOINT", fake.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        yield fake
    finally:
        fake.stop()
