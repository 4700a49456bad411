"""Running the app on uvicorn: our own listening socket (port 0 works), TLS, SIGTERM drain."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import uvicorn
from starlette.applications import Starlette

from onnx_engine.serving.state import ServerState


@dataclass(frozen=True)
class Listener:
    """Where and how the server listens; ``port`` 0 lets the OS pick a free port."""

    host: str = "127.0.0.1"
    port: int = 8000
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    access_log: bool = False

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_certfile else "http"


class DrainingServer(uvicorn.Server):
    """uvicorn's server, marking the app not-ready the moment a stop signal arrives.

    uvicorn then closes the listening socket, lets every request in progress finish (their
    texts stay queued and run), and the app's shutdown runs what is still queued. Loading errors
    stop the server too, so a model that cannot load ends the process instead of idling unready.
    """

    def __init__(self, config: uvicorn.Config, state: ServerState) -> None:
        super().__init__(config)
        self.serving = state

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.serving.draining = True
        super().handle_exit(sig, frame)
        # uvicorn re-raises captured signals after its shutdown, which would end a clean drain
        # with "killed by SIGTERM"; a drained server exits 0 instead.
        self._captured_signals.clear()

    async def on_tick(self, counter: int) -> bool:
        if self.serving.load_error is not None:
            self.should_exit = True
        return await super().on_tick(counter)


def bind(listener: Listener) -> socket.socket:
    """A listening socket on the listener's address (so port 0 is known before serving)."""
    family = socket.AF_INET6 if ":" in listener.host else socket.AF_INET
    # proto must say TCP: asyncio sets TCP_NODELAY only on sockets that do, and without it the
    # response body waits behind its headers for the client's delayed ACK (~40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((listener.host, listener.port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def make_server(app: Starlette, listener: Listener) -> DrainingServer:
    config = uvicorn.Config(
        app,
        host=listener.host,
        port=listener.port,
        ssl_certfile=str(listener.ssl_certfile) if listener.ssl_certfile else None,
        ssl_keyfile=str(listener.ssl_keyfile) if listener.ssl_keyfile else None,
        access_log=listener.access_log,
        log_level="info" if listener.access_log else "warning",
        lifespan="on",
        timeout_graceful_shutdown=None,  # finish everything accepted, however long it takes
    )
    return DrainingServer(config, app.state.serving)
