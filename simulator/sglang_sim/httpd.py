"""A small HTTP/1.1 server on asyncio, shaped like the subset of aiohttp.web the simulator used.

Why not aiohttp: at hundreds of concurrent streams the framework's fixed cost per request
(request objects, middleware plumbing, response preparation, writer layers) was the largest
part of the simulator's own overhead, more than the simulation. Real SGLang serves HTTP with
uvicorn and h11; this module answers the way uvicorn does where a client can tell: lower-case
header names, `date` and `server: uvicorn` first, `connection: close` when closing, 5 s
keep-alive, 400 "Invalid HTTP request received." for a request it cannot parse.

What it implements: persistent connections (HTTP/1.1 by default, HTTP/1.0 with keep-alive),
requests one at a time per connection (pipelined requests wait in the buffer), bodies by
Content-Length or chunked transfer coding, `Expect: 100-continue`, HEAD for every GET route,
responses with a length or chunked streams, write back-pressure, and a handler that is
cancelled when its client disconnects (as aiohttp did, and as SGLang aborts such a request).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from urllib.parse import unquote

log = logging.getLogger("sglang_sim.http")

MAX_HEAD = 64 * 1024
MAX_BODY = 256 * 1024 * 1024
KEEPALIVE_SECONDS = 5.0
WRITE_HIGH_WATER = 64 * 1024

Handler = Callable[["Request"], Awaitable["StreamResponse"]]
Middleware = Callable[["Request", Handler], Awaitable["StreamResponse"]]

_REASONS = {s.value: s.phrase for s in HTTPStatus}
_date_cache = [0, ""]


def http_date() -> str:
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0] = now
        _date_cache[1] = email.utils.formatdate(now, usegmt=True)
    return _date_cache[1]


def response_head(status: int, reason: str, headers: list[str], close: bool) -> bytes:
    """The status line and headers of a response, as uvicorn writes them: date and server
    first, then the response's own, then connection: close when the server will close."""
    lines = [f"HTTP/1.1 {status} {reason}", f"date: {http_date()}", "server: uvicorn", *headers]
    if close:
        lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class HTTPException(Exception):
    status = 500


class HTTPNotFound(HTTPException):
    status = 404


class HTTPMethodNotAllowed(HTTPException):
    status = 405


class BadRequest(Exception):
    """The bytes on the connection are not an HTTP/1.x request; the connection is closed."""

    def __init__(self, status: int = 400) -> None:
        super().__init__(status)
        self.status = status


class Headers(dict):
    """Request headers by lower-case name; repeated headers are joined with ", "."""

    def get(self, name: str, default=None):
        return dict.get(self, name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return dict.__getitem__(self, name.lower())

    def __contains__(self, name) -> bool:
        return dict.__contains__(self, name.lower())


class Request:
    __slots__ = ("_body", "headers", "match_info", "method", "path", "path_qs", "protocol",
                 "version")

    def __init__(self, method: str, target: str, version: tuple[int, int], headers: Headers,
                 body: bytes, protocol: Connection) -> None:
        self.method = method
        self.path_qs = target
        self.path = unquote(target.partition("?")[0])
        self.version = version
        self.headers = headers
        self._body = body
        self.protocol = protocol
        self.match_info: dict[str, str] = {}

    async def read(self) -> bytes:
        return self._body


class StreamResponse:
    """A response sent in chunks: prepare(), write()..., write_eof()."""

    def __init__(self, status: int = 200, headers: dict[str, str] | None = None,
                 reason: str | None = None) -> None:
        self.status = status
        self.reason = reason or _REASONS.get(status, "")
        self.headers = {k.lower(): v for k, v in (headers or {}).items()}
        self.prepared = False
        self.eof_sent = False
        self._conn: Connection | None = None
        self._head: bytes | None = None  # sent with the first body bytes: one write, not two
        self._length: int | None = None  # None: streamed
        self._chunked = False  # set by prepare(): streamed to an HTTP/1.1 client
        self._head_only = False

    @property
    def headers_sent(self) -> bool:
        return self.prepared and self._head is None

    async def prepare(self, request: Request) -> None:
        if self.prepared:
            return
        self._conn = conn = request.protocol
        conn.response = self
        self._head_only = request.method == "HEAD"
        streamed = self._length is None
        self._chunked = streamed and request.version >= (1, 1)
        if streamed and not self._chunked:
            # HTTP/1.0 has no chunked coding: the body ends when the connection closes.
            conn.keep_alive = False
        headers = [f"content-length: {self._length}"] if not streamed else []
        headers.extend(f"{k}: {v}" for k, v in self.headers.items())
        if self._chunked:
            headers.append("transfer-encoding: chunked")
        self._head = response_head(self.status, self.reason, headers, not conn.keep_alive)
        self.prepared = True

    def _send(self, data: bytes) -> None:
        conn = self._conn
        transport = conn.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("Cannot write to closing transport")
        if self._head is not None:
            data = self._head + data
            self._head = None
        transport.write(data)

    @property
    def writable(self) -> bool:
        """True while the client is connected and bytes can still be sent."""
        transport = self._conn.transport if self._conn is not None else None
        return transport is not None and not transport.is_closing()

    def write_buffer_size(self) -> int:
        """Bytes written but not yet taken by the client's socket."""
        transport = self._conn.transport if self._conn is not None else None
        return transport.get_write_buffer_size() if transport is not None else 0

    def write_nowait(self, data: bytes) -> None:
        """Send data as one chunk now (with the headers, the first time), without waiting for
        the client to take it: for a caller that is not a coroutine and watches
        write_buffer_size() itself."""
        if self._head_only or not data:
            if self._head is not None:
                self._send(b"")
            return
        self._send(b"%x\r\n%b\r\n" % (len(data), data) if self._chunked else data)

    async def write(self, data: bytes) -> None:
        self.write_nowait(data)
        await self._conn.drain()

    async def write_eof(self, data: bytes = b"") -> None:
        if self.eof_sent:
            return
        self.eof_sent = True
        self._send(self._last_bytes(data))

    def _last_bytes(self, data: bytes) -> bytes:
        """What write_eof(data) sends: data framed as the body's end."""
        if self._head_only:
            return b""
        if not self._chunked:
            return data
        return b"%x\r\n%b\r\n0\r\n\r\n" % (len(data), data) if data else b"0\r\n\r\n"


class Response(StreamResponse):
    """A response with its whole body known: sent with a content-length in one write."""

    def __init__(self, status: int = 200, text: str | None = None, body: bytes | None = None,
                 content_type: str | None = None, charset: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(status, headers)
        if text is not None:
            charset = charset or "utf-8"
            content_type = content_type or "text/plain"
            body = text.encode(charset)
        self.body = body or b""
        self._length = len(self.body)
        if content_type is not None:
            self.headers["content-type"] = (f"{content_type}; charset={charset}" if charset
                                            else content_type)

    async def write(self, data: bytes) -> None:
        raise RuntimeError("a Response has its body already; use a StreamResponse to stream")

    def _last_bytes(self, data: bytes) -> bytes:
        return b"" if self._head_only else self.body


class Router:
    """Exact paths, plus path prefixes whose rest is one named parameter."""

    def __init__(self) -> None:
        self._exact: dict[str, dict[str, Handler]] = {}
        self._prefix: list[tuple[str, str, dict[str, Handler]]] = []

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        if path.endswith("}"):
            prefix, _, param = path.rpartition("{")
            name = param[:-1].split(":", 1)[0]
            for p, n, methods in self._prefix:
                if p == prefix and n == name:
                    break
            else:
                methods = {}
                self._prefix.append((prefix, name, methods))
        else:
            methods = self._exact.setdefault(path, {})
        methods[method] = handler
        if method == "GET":
            methods.setdefault("HEAD", handler)

    def add_get(self, path: str, handler: Handler) -> None:
        self.add_route("GET", path, handler)

    def add_post(self, path: str, handler: Handler) -> None:
        self.add_route("POST", path, handler)

    def add_put(self, path: str, handler: Handler) -> None:
        self.add_route("PUT", path, handler)

    def resolve(self, request: Request) -> Handler:
        methods = self._exact.get(request.path)
        if methods is None:
            for prefix, name, candidates in self._prefix:
                if request.path.startswith(prefix) and len(request.path) > len(prefix):
                    request.match_info[name] = request.path[len(prefix):]
                    methods = candidates
                    break
        if methods is None:
            return _not_found
        return methods.get(request.method, _method_not_allowed)


async def _not_found(request: Request) -> StreamResponse:
    raise HTTPNotFound


async def _method_not_allowed(request: Request) -> StreamResponse:
    raise HTTPMethodNotAllowed


class App:
    def __init__(self, middlewares: list[Middleware] | None = None) -> None:
        self.router = Router()
        self.middlewares = list(middlewares or [])
        # Each handler wrapped in the middlewares once, not once per request.
        self._chains: dict[Handler, Handler] = {}

    async def handle(self, request: Request) -> StreamResponse:
        handler = self.router.resolve(request)
        chain = self._chains.get(handler)
        if chain is None:
            chain = handler
            for mw in reversed(self.middlewares):
                chain = _bind(mw, chain)
            self._chains[handler] = chain
        return await chain(request)


def _bind(mw: Middleware, inner: Handler) -> Handler:
    async def handler(request: Request) -> StreamResponse:
        return await mw(request, inner)
    return handler


class Connection(asyncio.Protocol):
    """One client connection: parses requests, runs each through the app in a task, writes
    what it returns, then waits for the next request or closes after the keep-alive time."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.task: asyncio.Task | None = None
        self.response: StreamResponse | None = None  # the current request's, once prepared
        self.keep_alive = True
        self.continue_sent = False
        self.idle_timer: asyncio.TimerHandle | None = None
        self._paused = False
        self._drain_waiter: asyncio.Future | None = None
        self.peer = "-"

    # ---- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        if peer and len(peer) >= 2:
            self.peer = f"{peer[0]}:{peer[1]}"
        self.server.connections.add(self)
        self._arm_idle_timer()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.task is None:
            self._next_request()
        elif len(self.buf) > MAX_HEAD + MAX_BODY:
            # Pipelined bytes wait while a request runs; a client that sends without end
            # would grow the buffer without bound.
            self.transport.close()

    def connection_lost(self, exc) -> None:
        self.server.connections.discard(self)
        self._cancel_idle_timer()
        if self.task is not None and not self.task.done():
            self.task.cancel()
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("Connection lost"))
        self.transport = None

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def drain(self) -> None:
        if self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("Connection lost")
        if self._paused:
            self._drain_waiter = self.loop.create_future()
            try:
                await self._drain_waiter
            finally:
                self._drain_waiter = None

    # ---- requests ----------------------------------------------------------------------------
    def _arm_idle_timer(self) -> None:
        self._cancel_idle_timer()
        self.idle_timer = self.loop.call_later(KEEPALIVE_SECONDS, self._idle_timeout)

    def _cancel_idle_timer(self) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None

    def _idle_timeout(self) -> None:
        self.idle_timer = None
        if self.task is None and self.transport is not None:
            self.transport.close()

    def _next_request(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        try:
            request = self._parse()
        except BadRequest as exc:
            self._reject(exc.status)
            return
        if request is None:
            return
        self._cancel_idle_timer()
        self.task = self.loop.create_task(self._serve(request))

    def _reject(self, status: int) -> None:
        body = b"Invalid HTTP request received." if status == 400 else b""
        self.transport.write(response_head(
            status, _REASONS.get(status, ""),
            ["content-type: text/plain; charset=utf-8", f"content-length: {len(body)}"],
            close=True) + body)
        self.transport.close()
        self.buf.clear()

    def _parse(self) -> Request | None:
        """The next complete request in the buffer (removed from it), or None for more bytes."""
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEAD:
                raise BadRequest(431)
            return None
        try:
            head = bytes(buf[:end]).decode("latin-1")
            lines = head.split("\r\n")
            while lines and not lines[0]:  # stray empty lines before a request are allowed
                lines.pop(0)
            method, target, proto = lines[0].split(" ")
            if not proto.startswith("HTTP/1.") or not method.isalpha():
                raise ValueError(proto)
            version = (1, int(proto[7:]))
            headers = Headers()
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if not sep or not name or name != name.strip():
                    raise ValueError(line)
                key, value = name.lower(), value.strip()
                headers[key] = headers[key] + ", " + value if key in headers else value
        except (ValueError, IndexError):
            raise BadRequest(400) from None
        start = end + 4
        te = headers.get("transfer-encoding")
        if te is not None:
            if te.lower() != "chunked" or "content-length" in headers:
                raise BadRequest(400)
            parsed = self._chunked_body(start)
            if parsed is None:
                self._maybe_continue(headers, version)
                return None
            body, consumed = parsed
        else:
            try:
                length = int(headers.get("content-length", "0"))
            except ValueError:
                raise BadRequest(400) from None
            if length < 0:
                raise BadRequest(400)
            if length > MAX_BODY:
                raise BadRequest(413)
            if len(buf) < start + length:
                self._maybe_continue(headers, version)
                return None
            body, consumed = bytes(buf[start:start + length]), start + length
        del buf[:consumed]
        self.continue_sent = False
        conn = (headers.get("connection") or "").lower()
        self.keep_alive = ("close" not in conn) if version >= (1, 1) else ("keep-alive" in conn)
        return Request(method, target, version, headers, body, self)

    def _chunked_body(self, pos: int) -> tuple[bytes, int] | None:
        buf = self.buf
        parts = []
        total = 0
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            try:
                size = int(bytes(buf[pos:eol]).split(b";", 1)[0], 16)
            except ValueError:
                raise BadRequest(400) from None
            pos = eol + 2
            if size == 0:
                # Trailer fields, if any, end with an empty line.
                end = buf.find(b"\r\n\r\n", pos - 2)
                if end < 0:
                    return None
                return b"".join(parts), end + 4
            total += size
            if total > MAX_BODY:
                raise BadRequest(413)
            if len(buf) < pos + size + 2:
                return None
            parts.append(bytes(buf[pos:pos + size]))
            pos += size + 2

    def _maybe_continue(self, headers: Headers, version: tuple[int, int]) -> None:
        if (not self.continue_sent and version >= (1, 1)
                and (headers.get("expect") or "").lower() == "100-continue"):
            self.continue_sent = True
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    async def _serve(self, request: Request) -> None:
        server = self.server
        resp: StreamResponse | None = None
        self.response = None
        try:
            try:
                resp = await server.app.handle(request)
            except HTTPException as exc:
                resp = Response(exc.status, text=_REASONS.get(exc.status, ""))
            if not resp.prepared:
                await resp.prepare(request)
            if not resp.eof_sent:
                await resp.write_eof()
        except (asyncio.CancelledError, ConnectionError):
            self.task = None
            if self.transport is not None:
                self.transport.close()
            return
        except Exception:
            log.exception("Exception in ASGI application")
            self.keep_alive = False
            resp = self.response
            if resp is None or not resp.headers_sent:
                # Nothing reached the client yet: it gets a 500, as from uvicorn.
                resp = Response(500, text="Internal Server Error")
                try:
                    await resp.prepare(request)
                    await resp.write_eof()
                except ConnectionError:
                    pass
        server.access(self, request, resp)
        self.task = None
        if self.transport is None:
            return
        if not self.keep_alive:
            self.transport.close()
            return
        self._arm_idle_timer()
        if self.buf:
            self._next_request()


class HttpServer:
    """Listens and owns the connections: close() stops accepting and closes idle ones."""

    def __init__(self, app: App, access_log: logging.Logger | None) -> None:
        self.app = app
        self.access_log = access_log
        self.loop = asyncio.get_running_loop()
        self.connections: set[Connection] = set()
        self._server: asyncio.AbstractServer | None = None

    async def start(self, host: str, port: int, backlog: int = 1024) -> None:
        self._server = await self.loop.create_server(lambda: Connection(self), host, port,
                                                     backlog=backlog)

    def access(self, conn: Connection, request: Request, resp: StreamResponse) -> None:
        logger = self.access_log
        if logger is not None and logger.isEnabledFor(logging.INFO):
            logger.info('%s - "%s %s HTTP/%d.%d" %d %s', conn.peer, request.method,
                        request.path_qs, request.version[0], request.version[1], resp.status,
                        resp.reason)

    async def close(self, timeout: float = 5.0) -> None:
        """Stop listening, close idle connections, give running requests up to timeout."""
        if self._server is not None:
            self._server.close()
        deadline = self.loop.time() + timeout
        while True:
            busy = False
            for conn in list(self.connections):
                if conn.task is None:
                    if conn.transport is not None:
                        conn.transport.close()
                else:
                    busy = True
            if not busy or self.loop.time() > deadline:
                break
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()
