"""Shared by the ``moalign serve`` tests: a real server of a tiny trained folder in a thread, and an HTTP client.

The client is the standard library's ``urllib`` talking to a uvicorn server listening on a free port -- the
same path a user's client takes (no in-process test client).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from moalign.inference import load_policy
from moalign.inference.server import BackgroundServer, PolicyServer, create_app

#: words of the tiny tokenizer (moalign.models.testing.TINY_WORDS), so that no prompt token is <unk>
PROMPTS = ["tell me a story", "write a poem about the sun", "why is the sky blue ?", "say hello to the cat"]


@contextmanager
def running_server(folder: Path, **limits: Any) -> Iterator[tuple[str, PolicyServer]]:
    """``(url, server)`` of a real HTTP server of ``folder`` (loaded once), stopped on exit."""
    server = PolicyServer(load_policy(folder), precision="fp32", **limits)
    server.load()
    with BackgroundServer(create_app(server)) as url:
        yield url, server


def request(url: str, path: str, body: Any = None, raw: bytes | None = None, timeout: float = 120.0
            ) -> tuple[int, Any]:
    """``(status, decoded JSON or text)`` of GET ``path`` (no body) or POST ``path`` with a JSON ``body``."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url + path, data=data, method="GET" if data is None else "POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            status, payload = response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        status, payload = err.code, err.read().decode()
    try:
        return status, json.loads(payload)
    except json.JSONDecodeError:
        return status, payload


def chat(url: str, prompt: str, weights: Any = None, max_tokens: int = 12, **extra: Any) -> tuple[int, Any]:
    """POST one user message to ``/v1/chat/completions``."""
    body: dict[str, Any] = {"messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, **extra}
    if weights is not None:
        body["weights"] = list(weights)
    return request(url, "/v1/chat/completions", body)
