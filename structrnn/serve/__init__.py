"""Trained runs over HTTP: ``structrnn serve RUN [RUN ...]``.

A JSON API (``POST /v1/models/{name}/predict``: the rows of ``Predictor.predict``), a page at
``/`` (a sentence's tree coloured by sentiment, a molecule's drawing and predicted targets; every
file served by the package, nothing from a CDN) and dynamic batching of concurrent requests.
FastAPI and uvicorn come with the ``serve`` extra (``pip install 'structrnn[serve]'``).

Modules: :mod:`~structrnn.serve.app` (the routes), :mod:`~structrnn.serve.batching` (joining
requests into one ``predict``), :mod:`~structrnn.serve.models` (the served runs and the limits),
:mod:`~structrnn.serve.limits` (the body-size limit), :mod:`~structrnn.serve.chemistry`
(drawings and units), :mod:`~structrnn.serve.server` (uvicorn).
"""

from __future__ import annotations

from structrnn._lazy import lazy_exports

__all__ = ["create_app", "serve", "Batcher", "ServeSettings"]

# fastapi, uvicorn and torch load on first use, so `structrnn serve --help` answers at once
__getattr__, __dir__ = lazy_exports(__name__, {
    ".app": ["create_app"], ".server": ["serve"], ".batching": ["Batcher"],
    ".models": ["ServeSettings"],
})
