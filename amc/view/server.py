"""The HTTP side of ``amc view``: a read-only ``http.server`` over one :class:`~amc.view.source.ViewSource`.

GET only; every other method is refused. It binds to loopback unless told otherwise, and serves nothing but
its own pages and the source's plot images.
"""

from __future__ import annotations

import html
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa

from amc.errors import AmcError
from amc.view.index import Query
from amc.view.pages import layout, overview_page, row_page, rows_page
from amc.view.source import ViewSource

PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


class ViewServer(ThreadingHTTPServer):
    """An HTTP server that knows its :class:`ViewSource`."""

    daemon_threads = True

    def __init__(self, src: ViewSource, host: str = "127.0.0.1", port: int = 0):
        self.src = src
        super().__init__((host, port), Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{'[' + host + ']' if ':' in str(host) else host}:{port}/"


class Handler(BaseHTTPRequestHandler):
    server: ViewServer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass  # quiet: a browser asks for many pages

    def _send(self, status: int, body: bytes, content_type: str = "text/html; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str) -> None:
        page = layout(self.server.src, "error", f"<h1>{status}</h1><p id=error>{html.escape(message)}</p>")
        self._send(status, page.encode())

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        src = self.server.src
        url = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        try:
            if url.path == "/":
                self._send(HTTPStatus.OK, overview_page(src).encode())
            elif url.path == "/rows":
                query = Query(**{k: params.get(k, "").strip() for k in Query.__dataclass_fields__})
                offset = _int(params.get("offset"), 0)
                limit = min(MAX_PAGE_SIZE, max(1, _int(params.get("limit"), PAGE_SIZE)))
                self._send(HTTPStatus.OK, rows_page(src, query, offset, limit).encode())
            elif url.path == "/row":
                position = src.locate(params.get("id", ""), params.get("stage", ""), params.get("part", ""))
                if position is None:
                    self._error(HTTPStatus.NOT_FOUND, f"no row with id {params.get('id', '')!r}")
                    return
                self._send(HTTPStatus.OK, row_page(src, position).encode())
            elif url.path.startswith("/plots/"):
                data = src.plots().get(url.path.removeprefix("/plots/"))
                if data is None:
                    self._error(HTTPStatus.NOT_FOUND, "no such plot")
                    return
                self._send(HTTPStatus.OK, data, "image/png")
            else:
                self._error(HTTPStatus.NOT_FOUND, "no such page")
        except (BrokenPipeError, ConnectionResetError):
            pass
        except (AmcError, OSError, pa.ArrowException) as exc:  # e.g. a shard rewritten by a build since startup
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{exc}; restart amc view to re-read the run")

    def do_POST(self) -> None:  # noqa: N802
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"read-only", "text/plain")

    do_PUT = do_DELETE = do_PATCH = do_POST


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value not in (None, "") else default
    except ValueError:
        return default


def start(src: ViewSource, host: str = "127.0.0.1", port: int = 0) -> tuple[ViewServer, threading.Thread]:
    """Serve ``src`` in a background thread; ``server.url`` is where; ``server.shutdown()`` stops it.

    >>> server, _ = start(ViewSource("runs/quickstart"))  # doctest: +SKIP
    >>> server.url  # doctest: +SKIP
    'http://127.0.0.1:43121/'
    """
    server = ViewServer(src, host, port)
    thread = threading.Thread(target=server.serve_forever, name="amc-view", daemon=True)
    thread.start()
    return server, thread
