"""A webhook receiver for tests: a local HTTP server that records every request and answers from a script."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when it arrived


class Receiver:
    """Answers each POST with the next scripted status (the last one repeats), after `delay_s`; `location` goes
    on redirects."""

    def __init__(self, statuses=(200,), delay_s: float = 0.0, location: str | None = None):
        self.statuses, self.delay_s, self.location = list(statuses), delay_s, location
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """Where it listens, with a path."""
        return f"http://127.0.0.1:{self._server.server_port}/hooks/gradaudit"

    def close(self) -> None:
        """Stop listening."""
        self._server.shutdown()
        self._server.server_close()

    def wait_for(self, count: int, timeout_s: float = 60) -> list[Received]:
        """Block until `count` requests arrived; the requests."""
        deadline = time.monotonic() + timeout_s
        while len(self.received) < count:
            assert time.monotonic() < deadline, f"{len(self.received)} of {count} requests arrived"
            time.sleep(0.05)
        return self.received

    def _answer(self, request: Received) -> int:
        with self._lock:
            status = self.statuses[min(len(self.received), len(self.statuses) - 1)]
            self.received.append(request)
        return status

    def _handler(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = receiver._answer(Received(self.path, dict(self.headers.items()), body, time.monotonic()))
                time.sleep(receiver.delay_s)
                try:
                    self.send_response(status)
                    if receiver.location:
                        self.send_header("Location", receiver.location)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the sender gave up waiting, as a slow receiver's test wants

            def log_message(self, *_args):
                pass

        return Handler


def verifies(secret: str, request: Received) -> bool:
    """The receiver's check, as the README tells it: HMAC-SHA256 over `{timestamp}.{body}` with the key's secret."""
    timestamp = request.headers["X-Gradaudit-Timestamp"]
    expected = "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + request.body,
                                    hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, request.headers["X-Gradaudit-Signature"])


def key_secret(server_secret: str, key_id: str | None) -> str:
    """A key's webhook secret as `gradaudit keys webhook-secret` prints it, computed here from its definition."""
    label = b"gradaudit webhook signing secret v1:" + (key_id or "anonymous").encode()
    return "whsec_" + hmac.new(server_secret.encode(), label, hashlib.sha256).hexdigest()
