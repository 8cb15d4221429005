"""gunicorn's worker for the plugin socket: a request is read whole, within a deadline, before it
takes a thread.

gunicorn's gthread worker hands a connection to a thread as soon as it is readable, and the
thread then blocks reading the rest of the request: eight connections that send part of a
request and stall hold every thread of two workers, and every other call waits behind them. Here
the worker's event loop reads each connection without blocking into a buffer, and only a request
that has arrived whole (its head and its body, framed by gunicorn's own parser) goes to the
thread pool, whose threads then read nothing from the socket. A connection that has not delivered
its request within the deadline (the call bound, ``IPLEDGER_CALL_TIMEOUT``) is answered 408 and
closed; a kept-alive connection on which nothing was sent is closed after gunicorn's keep-alive
timeout, as gthread does. So a stalled connection holds a file descriptor for at most the bound,
never a thread.

Only gunicorn's stable parts are used (the base worker, the HTTP parser and its WSGI response),
none of gthread's internals.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import selectors
import socket
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from functools import partial
from queue import Empty, SimpleQueue
from typing import Any

from gunicorn.http import wsgi
from gunicorn.http.body import LengthReader
from gunicorn.http.errors import NoMoreData
from gunicorn.http.message import Request
from gunicorn.http.unreader import Unreader
from gunicorn.workers.base import Worker

# what one recv() takes from a connection
READ_SIZE = 256 * 1024
# a body allowed when the application sets no MAX_CONTENT_LENGTH
DEFAULT_BODY_LIMIT = 1024 * 1024
# beyond the body limit: room for a request's head (gunicorn refuses longer heads itself)
HEAD_ROOM = 256 * 1024


class _NeedMore(Exception):
    """The request has not arrived whole yet."""


class _Probe(Unreader):  # type: ignore[misc]
    """The bytes received so far, once; reading past them means the request is incomplete."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self.data: bytes | None = data

    def chunk(self, size_hint: int | None = None) -> bytes:
        data, self.data = self.data, None
        if not data:
            raise _NeedMore
        return data


class _Received(Unreader):  # type: ignore[misc]
    """A whole request (and whatever followed it): the thread never reads the socket."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self.buf.write(data)

    def chunk(self, size_hint: int | None = None) -> bytes:
        return b""

    def rest(self) -> bytes:
        return bytes(self.buf.getvalue())


class _Conn:
    """A client connection and the request being received on it."""

    def __init__(self, sock: socket.socket, client: Any, server: Any) -> None:
        self.sock = sock
        self.client = client
        self.server = server
        self.inbox = bytearray()
        self.deadline = 0.0
        self.idle = False  # kept alive, nothing of the next request received yet
        self.started = False  # part of a request has been received
        self.need: int | None = None  # head and body, once the head gave a Content-Length
        self.continued = False  # "100 Continue" was sent for this request
        self.requests = 0


WHOLE, TOO_LARGE = "whole", "too large"


class PluginWorker(Worker):  # type: ignore[misc]
    """gunicorn's worker with a thread pool fed only whole requests."""

    #: seconds a connection has to deliver a whole request (set by :func:`worker_class`)
    request_timeout = 5.0

    def init_process(self) -> None:
        self.poller = selectors.DefaultSelector()
        self.pool = ThreadPoolExecutor(self.cfg.threads, thread_name_prefix="ipledger-call")
        self.finished: SimpleQueue[tuple[_Conn, bool, bytes]] = SimpleQueue()
        self.reading: dict[_Conn, None] = {}
        self.busy = 0
        self.nr_conns = 0
        self.accepting = False
        super().init_process()

    # -- the event loop (the worker's main thread) ------------------------------------------

    def run(self) -> None:
        config = getattr(self.wsgi, "config", None)
        limit = config.get("MAX_CONTENT_LENGTH") if config is not None else None
        self.body_limit = int(limit) if limit else DEFAULT_BODY_LIMIT
        larger = config.get("IPLEDGER_BODY_LIMITS") if config is not None else None
        self.body_limits: dict[str, int] = dict(larger or {})
        for listener in self.sockets:
            listener.setblocking(False)
        # gunicorn's own pipe: signals write to it, and so do threads that finish a call
        self.poller.register(self.PIPE[0], selectors.EVENT_READ, self._wake)
        while self.alive:
            self.notify()
            self._accept(self.nr_conns < self.cfg.worker_connections)
            self._wait(1.0)
            self._expire()
            if self.ppid != os.getppid():
                self.log.info("Parent changed, shutting down: %s", self)
                break
        self._stop()

    def _wait(self, timeout: float) -> None:
        if self.reading:
            soonest = min(conn.deadline for conn in self.reading)
            timeout = min(timeout, max(0.0, soonest - time.monotonic()))
        try:
            events = self.poller.select(timeout)
        except OSError as e:
            if e.errno != errno.EINTR:
                raise
            return
        for key, _ in events:
            key.data(key.fileobj)

    def _accept(self, enabled: bool) -> None:
        if enabled == self.accepting:
            return
        for listener in self.sockets:
            if enabled:
                self.poller.register(listener, selectors.EVENT_READ, self._new_connection)
            else:
                self.poller.unregister(listener)
        self.accepting = enabled

    def _new_connection(self, listener: Any) -> None:
        try:
            sock, client = listener.accept()
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                return
            raise
        sock.setblocking(False)
        self.nr_conns += 1
        conn = _Conn(sock, client, listener.getsockname())
        self._receive(conn, b"", idle=False)

    def _receive(self, conn: _Conn, received: bytes, *, idle: bool) -> None:
        """Wait for the connection's next request (``received``: what has come of it already)."""
        conn.inbox = bytearray(received)
        conn.need, conn.continued = None, False
        conn.started = bool(received)
        conn.idle = idle and not received
        wait = self.cfg.keepalive if conn.idle else self.request_timeout
        conn.deadline = time.monotonic() + wait
        self.reading[conn] = None
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._readable, conn))
        if received:
            self._examine(conn)

    def _readable(self, conn: _Conn, _sock: Any) -> None:
        try:
            data = conn.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client went away, or closed a kept-alive connection
            self._close(conn)
            return
        if conn.idle:
            conn.idle = False
            conn.deadline = time.monotonic() + self.request_timeout
        conn.started = True
        conn.inbox += data
        self._examine(conn)

    def _examine(self, conn: _Conn) -> None:
        verdict = self._complete(conn)
        if verdict is None:
            return
        self._unwatch(conn)
        data = bytes(conn.inbox)
        conn.inbox = bytearray()
        conn.requests += 1
        # the thread writes the answer: a client that does not read it is dropped at the bound
        conn.sock.settimeout(self.request_timeout)
        self.busy += 1
        future = self.pool.submit(self._serve, conn, data, verdict == TOO_LARGE)
        future.add_done_callback(partial(self._served, conn))

    def _complete(self, conn: _Conn) -> str | None:
        """``WHOLE`` when the request has arrived whole (or is malformed: a thread answers the
        parser's error), ``TOO_LARGE`` when its body is more than any call takes (the
        application refuses it from its head), None while more is to come."""
        inbox = conn.inbox
        if conn.need is not None:
            return WHOLE if len(inbox) >= conn.need else None
        probe = _Probe(bytes(inbox))
        try:
            request = Request(self.cfg, probe, conn.client, conn.requests + 1)
        except _NeedMore:
            return WHOLE if len(inbox) > HEAD_ROOM else None
        except Exception:
            return WHOLE
        head = len(inbox) - len(probe.buf.getvalue())
        reader = request.body.reader
        body_limit = self.body_limits.get(request.path, self.body_limit)
        if isinstance(reader, LengthReader):
            if reader.length > body_limit:
                return TOO_LARGE
            conn.need = head + reader.length
            if len(inbox) >= conn.need:
                return WHOLE
        else:  # chunked: read it through to its end, if it is there
            size = 0
            try:
                while chunk := request.body.read(READ_SIZE):
                    size += len(chunk)
                    if size > body_limit:
                        return TOO_LARGE
                return WHOLE
            except _NeedMore:
                if len(inbox) > head + body_limit + HEAD_ROOM:
                    return TOO_LARGE
            except Exception:
                return WHOLE
        if not conn.continued and _expects_continue(request):
            conn.continued = True
            self._send_now(conn, b"HTTP/1.1 100 Continue\r\n\r\n")
        return None

    def _served(self, conn: _Conn, future: Future[tuple[bool, bytes]]) -> None:
        """In the thread: hand the connection back to the event loop."""
        try:
            keepalive, rest = future.result()
        except BaseException:
            keepalive, rest = False, b""
        self.finished.put((conn, keepalive, rest))
        with contextlib.suppress(OSError):  # a full pipe: the loop is being woken anyway
            os.write(self.PIPE[1], b".")

    def _wake(self, fd: int) -> None:
        try:
            while os.read(fd, 4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        while True:
            try:
                conn, keepalive, rest = self.finished.get_nowait()
            except Empty:
                return
            self.busy -= 1
            if keepalive and self.alive:
                conn.sock.setblocking(False)
                self._receive(conn, rest, idle=True)
            else:
                self._close(conn)

    def _expire(self) -> None:
        now = time.monotonic()
        for conn in [c for c in self.reading if c.deadline <= now]:
            self._unwatch(conn)
            if conn.started:
                self.log.warning(
                    "closed a connection that sent %d bytes of a request and then nothing "
                    "for the rest of %g s",
                    len(conn.inbox),
                    self.request_timeout,
                )
                self._send_now(conn, _timeout_answer(self.request_timeout))
            self._close(conn)

    def _send_now(self, conn: _Conn, data: bytes) -> None:
        """What fits into the socket's buffer now: an answer the client may not be reading."""
        with contextlib.suppress(OSError):
            conn.sock.send(data)

    def _unwatch(self, conn: _Conn) -> None:
        if conn in self.reading:
            del self.reading[conn]
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.poller.unregister(conn.sock)

    def _close(self, conn: _Conn) -> None:
        self._unwatch(conn)
        self.nr_conns -= 1
        with contextlib.suppress(OSError):
            conn.sock.close()

    def _stop(self) -> None:
        """Stop accepting; let requests being received or served finish within the graceful
        timeout; close the rest."""
        self._accept(False)
        for conn in [c for c in self.reading if not c.started]:
            self._close(conn)
        deadline = time.monotonic() + self.cfg.graceful_timeout
        while (self.busy or self.reading) and time.monotonic() < deadline:
            self.notify()
            self._wait(min(1.0, max(0.0, deadline - time.monotonic())))
            self._expire()
        for conn in list(self.reading):
            self._close(conn)
        self.pool.shutdown(wait=False)
        self.poller.close()
        for listener in self.sockets:
            listener.close()

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.alive = False  # gunicorn's signal pipe wakes the loop

    # -- a thread of the pool -------------------------------------------------------------

    def _serve(self, conn: _Conn, data: bytes, too_large: bool) -> tuple[bool, bytes]:
        """Answer the request in ``data``; whether to keep the connection, and what followed
        the request on it."""
        received = _Received(data)
        request = None
        try:
            request = Request(self.cfg, received, conn.client, conn.requests)
            if conn.continued:
                request._expected_100_continue = False  # sent by the event loop already
            if not self._handle(request, conn) or too_large:
                return False, b""
            while request.body.read(READ_SIZE):  # what the application left unread
                pass
            return True, received.rest()
        except (NoMoreData, StopIteration):
            return False, b""
        except OSError as e:  # the client went away, or did not take its answer in time
            self.log.debug("connection dropped while answering: %s", e)
            return False, b""
        except Exception as e:
            self.handle_error(request, conn.sock, conn.client, e)
            return False, b""

    def _handle(self, request: Any, conn: _Conn) -> bool:
        """gunicorn's request handling (as in its gthread worker); whether to keep alive."""
        environ: dict[str, Any] = {}
        response = None
        try:
            self.cfg.pre_request(self, request)
            started = datetime.now()
            response, environ = wsgi.create(request, conn.sock, conn.client, conn.server, self.cfg)
            environ["wsgi.multithread"] = True
            self.nr += 1
            if self.nr >= self.max_requests:
                if self.alive:
                    self.log.info("Autorestarting worker after current request.")
                    self.alive = False
                    os.write(self.PIPE[1], b".")
                response.force_close()
            if not self.alive or not self.cfg.keepalive:
                response.force_close()
            body = self.wsgi(environ, response.start_response)
            try:
                if isinstance(body, environ["wsgi.file_wrapper"]):
                    response.write_file(body)
                else:
                    for item in body:
                        response.write(item)
                response.close()
            finally:
                self.log.access(response, request, environ, datetime.now() - started)
                if hasattr(body, "close"):
                    body.close()
            return not response.should_close()
        except OSError:
            raise
        except Exception:
            if response is not None and response.headers_sent:
                # half an answer is out: nothing can be added to it
                self.log.exception("Error handling request")
                return False
            raise
        finally:
            try:
                self.cfg.post_request(self, request, environ, response)
            except Exception:
                self.log.exception("Exception in post_request hook")


def _expects_continue(request: Any) -> bool:
    return any(
        name == "EXPECT" and value.strip().lower() == "100-continue"
        for name, value in request.headers
    ) and request.version >= (1, 1)


def _timeout_answer(seconds: float) -> bytes:
    message = f"request not received whole within {seconds:g} s: connection closed"
    body = json.dumps({"Err": message, "Error": message}).encode()
    return (
        b"HTTP/1.1 408 Request Timeout\r\n"
        b"Content-Type: application/vnd.docker.plugins.v1.2+json\r\n"
        b"Connection: close\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


def worker_class(request_timeout: float) -> type[PluginWorker]:
    """The worker, with the seconds a connection has to deliver a whole request."""
    return type("PluginWorker", (PluginWorker,), {"request_timeout": request_timeout})
