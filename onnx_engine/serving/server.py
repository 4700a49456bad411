"""Running the app on uvicorn: our own listening socket (port 0 works), TLS, client timeouts,
and a SIGTERM drain with a deadline."""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from engine.errors import InputError
from onnx_engine.serving.state import ServerState


@dataclass(frozen=True)
class Listener:
    """Where and how the server listens; ``port`` 0 lets the OS pick a free port.

    ``drain_timeout_s``: after SIGTERM, accepted requests have this long to be answered; then
    the server exits anyway (see :class:`DrainingServer`).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    access_log: bool = False
    drain_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not (
            0 <= self.port <= 65535
        ):
            raise InputError(f"--port must be 0 (any free port) to 65535, got {self.port!r}.")
        if isinstance(self.drain_timeout_s, bool) or not isinstance(
            self.drain_timeout_s, (int, float)
        ) or not self.drain_timeout_s > 0:
            raise InputError(
                f"--drain-timeout-s must be a positive number, got {self.drain_timeout_s!r}."
            )
        for flag, path in (("--ssl-certfile", self.ssl_certfile),
                           ("--ssl-keyfile", self.ssl_keyfile)):
            if path is not None and not Path(path).is_file():
                raise InputError(f"{flag} {path}: no such file.")

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_certfile else "http"


class DrainingServer(uvicorn.Server):
    """uvicorn's server, marking the app not-ready the moment a stop signal arrives.

    uvicorn then closes the listening socket and lets every request in progress finish (their
    texts stay queued and run) for up to ``drain_timeout_s``; past it, the requests still open
    are cancelled (``ServerState.abandoned`` counts the admitted ones) and the app's shutdown
    runs. Loading errors stop the server too, so a model that cannot load ends the process
    instead of idling unready. ``on_ready`` is called once, when the server listens and every
    model is loaded.
    """

    def __init__(self, config: uvicorn.Config, state: ServerState,
                 on_ready: Callable[[], None] | None = None) -> None:
        super().__init__(config)
        self.serving = state
        self._on_ready = on_ready

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.serving.begin_drain()
        super().handle_exit(sig, frame)
        # uvicorn re-raises captured signals after its shutdown, which would end a clean drain
        # with "killed by SIGTERM"; a drained server exits 0 instead.
        self._captured_signals.clear()

    async def on_tick(self, counter: int) -> bool:
        if self.serving.load_error is not None:
            self.should_exit = True
        if self._on_ready is not None and self.serving.ready and not self.serving.draining:
            announce, self._on_ready = self._on_ready, None
            announce()
        return await super().on_tick(counter)


def client_timeout_protocol(timeout_s: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol, closing connections whose request headers take over ``timeout_s``.

    uvicorn bounds only the idle time between requests (``timeout_keep_alive``), and only once
    the first bytes arrived: a connection that sends nothing, or half its headers, would stay
    open for ever. The deadline runs from the connection's start and from the end of each
    answer; a request whose headers arrived belongs to the app (its body has its own deadline,
    ``body.read_body``), so the deadline closes only a connection with no request in progress.
    Works over the h11 and the httptools protocol alike (both keep ``cycle`` and call
    ``on_response_complete``).
    """

    class ClientTimeoutProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
        _header_deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm_header_deadline()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_header_deadline()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._header_deadline is not None:
                self._header_deadline.cancel()
            super().connection_lost(exc)

        def _arm_header_deadline(self) -> None:
            if self._header_deadline is not None:
                self._header_deadline.cancel()
            self._header_deadline = self.loop.call_later(timeout_s, self._header_deadline_passed)

        def _header_deadline_passed(self) -> None:
            self._header_deadline = None
            waiting_for_client = self.cycle is None or self.cycle.response_complete
            if waiting_for_client and not self.transport.is_closing():
                self.transport.close()

    return ClientTimeoutProtocol


def bind(listener: Listener, flag: str = "--port") -> socket.socket:
    """A listening socket on the listener's address (so port 0 is known before serving);
    ``flag`` names the port's flag in messages.

    Raises:
        InputError: the host is unknown or not this machine's, or the port is taken.
    """
    family = socket.AF_INET6 if ":" in listener.host else socket.AF_INET
    # proto must say TCP: asyncio sets TCP_NODELAY only on sockets that do, and without it the
    # response body waits behind its headers for the client's delayed ACK (~40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((listener.host, listener.port))
        sock.listen(2048)
    except socket.gaierror as error:
        sock.close()
        raise InputError(
            f"--host {listener.host}: unknown host ({error.strerror}); give an address of this "
            "machine, e.g. 127.0.0.1 or 0.0.0.0."
        ) from None
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise InputError(
                f"{flag} {listener.port}: already in use on {listener.host}; stop the other "
                "server or pick another port (0: any free one)."
            ) from None
        raise InputError(
            f"--host {listener.host} {flag} {listener.port}: cannot listen there "
            f"({error.strerror}); give an address of this machine."
        ) from None
    sock.set_inheritable(True)
    return sock


def make_server(app: Starlette, listener: Listener,
                on_ready: Callable[[], None] | None = None) -> DrainingServer:
    """The uvicorn server for ``app``, with TLS loaded now (so a bad file fails before serving).

    Raises:
        InputError: the TLS certificate or key cannot be loaded.
    """
    state: ServerState = app.state.serving
    config = uvicorn.Config(
        app,
        host=listener.host,
        port=listener.port,
        ssl_certfile=str(listener.ssl_certfile) if listener.ssl_certfile else None,
        ssl_keyfile=str(listener.ssl_keyfile) if listener.ssl_keyfile else None,
        access_log=listener.access_log,
        log_level="info" if listener.access_log else "warning",
        lifespan="on",
        http=client_timeout_protocol(state.config.client_timeout_s),
        timeout_graceful_shutdown=listener.drain_timeout_s,  # type: ignore[arg-type]
    )
    try:
        config.load()
    except (ssl.SSLError, OSError) as error:
        raise InputError(
            f"--ssl-certfile {listener.ssl_certfile} / --ssl-keyfile {listener.ssl_keyfile}: "
            f"cannot load them as a PEM certificate and its key ({error})."
        ) from None
    return DrainingServer(config, state, on_ready)
