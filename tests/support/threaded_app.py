"""The Flask app served over a real loopback socket from a thread of the test, for tests of what talks HTTP to it
(gradaudit.client, the CLI's remote commands) without starting `gradaudit serve`."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask
from werkzeug.serving import make_server


@contextmanager
def serving(app: Flask) -> Iterator[str]:
    """The app on an ephemeral port of 127.0.0.1 while the block runs; yields its base URL, http://127.0.0.1:PORT."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)
