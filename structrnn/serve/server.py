"""``structrnn serve``: the application of :mod:`structrnn.serve.app` under uvicorn.

uvicorn answers SIGTERM and SIGINT by closing the listening socket, finishing the requests in
flight (at most :data:`GRACE_S` seconds) and exiting; an idle server exits at once.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from structrnn.serve.models import ServeSettings

__all__ = ["serve", "GRACE_S"]

GRACE_S = 30  # seconds the requests in flight get after SIGTERM


def serve(runs: Sequence[str | Path], parser: str | Path | None = None, *,
          host: str = "127.0.0.1", port: int = 8000, settings: ServeSettings | None = None,
          access_log: bool = False) -> int:
    """Serve ``runs`` until SIGTERM or SIGINT; returns the exit code (0, or 2 when a run could
    not be loaded)."""
    import uvicorn

    from structrnn.serve.app import create_app

    failed: list[str] = []
    server: uvicorn.Server | None = None

    def stop(reason: str) -> None:
        failed.append(reason)
        print(f"structrnn serve: error: {reason}", file=sys.stderr)
        if server is not None:
            server.should_exit = True

    app = create_app(list(runs), parser, settings, on_failure=stop)
    config = uvicorn.Config(app, host=host, port=port, timeout_graceful_shutdown=GRACE_S,
                            access_log=access_log, log_level="info")
    server = uvicorn.Server(config)
    server.run()
    return 2 if failed else 0
