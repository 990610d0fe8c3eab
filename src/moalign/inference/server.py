"""``moalign serve``: a trained folder as a local HTTP server -- OpenAI-compatible chat completions with a
``weights`` field, and a one-page steering playground.

    moalign serve --model runs/demo/model [--host 127.0.0.1] [--port 8000]

Endpoints (FastAPI on uvicorn):

* ``POST /v1/chat/completions`` -- OpenAI's request (``messages``, ``model``, ``max_tokens`` /
  ``max_completion_tokens``, ``temperature``, ``top_p``, ``seed``, ``n`` = 1, ``stream`` = false) plus
  ``weights`` (one per name of ``policy.weight_names``; default: equal weights). The answer has OpenAI's shape
  (``choices[0].message.content``, ``finish_reason``, ``usage``) and a ``moalign`` object with the weights
  used and the policy they selected. ``temperature`` defaults to 0 (greedy, as ``moalign generate``), not
  OpenAI's 1.
* ``GET /v1/models`` -- the one served model (id = the folder's name), with its method, objectives and weight
  names; ``GET /health`` -- the same and ``"status": "ok"``;
* ``GET /`` -- the playground (``static/index.html``): one slider per weight name, kept on the simplex.

Every bad request is answered with HTTP 400 and OpenAI's error shape ``{"error": {"message", "type", "param"}}``:
unknown or mistyped fields, a wrong number of weights, negative weights, weights off the simplex or off a
conditioned method's grid (:func:`moalign.inference.weights.check_weights`), prompts longer than
``--max_prompt_chars``, ``max_tokens`` outside ``1..--max_new_tokens_limit``.

**One model for every weight.** The policy (:class:`~moalign.inference.policy.LoadedPolicy`) loads its model
once, at start-up, and keeps it. For a multi-head model (MOPO, HaM, SCA) a request's weights only choose how
the heads' logits are combined in the output layer (reverse-KL steering is ``softmax(sum_k w_k z_k)``,
docs/use_your_model.md), so every weight is served at the cost of one model. Other families also keep their
model: a soup re-interpolates its adapter for the weights, the conditioned methods rewrite the prompt; only
MODPO loads the trained model nearest the weights when it differs from the last one (one model per weight is
what MODPO trained).

**Concurrency.** The weights live in the model object while it generates (``MultiHeadCausalLM.steer`` sets
the output layer's steering for the duration of a context; a soup sets its adapter to theta(w)), so two
generations at once would read each other's weights. The server therefore generates under one lock
(:attr:`PolicyServer.lock`): a request takes it, sets its weights, generates, restores the model and releases
it. Requests are validated before they queue, so a bad one is answered at once. Generation of one request
already keeps the processor busy (compute-bound decoding), so serialising costs little throughput and keeps
every answer exactly the sequential answer for its weights; the alternative -- batching requests of different
weights with per-row combined logits in a custom decoding loop -- is not implemented.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, StrictBool, StrictInt

from moalign.data.prompts import has_chat_template

#: a JSON number (not a string or a boolean that pydantic would otherwise convert)
Number = Annotated[float, Strict()]

__all__ = ["ServeConfig", "PolicyServer", "RequestError", "ChatRequest", "create_app", "run_serve",
           "BackgroundServer"]

#: characters of all messages' contents together that a request may send, unless --max_prompt_chars says otherwise
DEFAULT_MAX_PROMPT_CHARS = 8000
#: largest max_tokens a request may ask for, unless --max_new_tokens_limit says otherwise
DEFAULT_MAX_NEW_TOKENS_LIMIT = 512
#: max_tokens of a request that gives none (capped by the limit)
DEFAULT_MAX_TOKENS = 64


@dataclass
class ServeConfig:
    """Settings of ``moalign serve``."""

    model: str = field(default="", metadata={"help": "Folder written by `moalign train <method>` (any method)."})
    host: str = field(default="127.0.0.1", metadata={"help": "Address to listen on (127.0.0.1: this machine only)."})
    port: int = field(default=8000, metadata={"help": "Port to listen on."})
    max_prompt_chars: int = field(default=DEFAULT_MAX_PROMPT_CHARS, metadata={
        "help": "Longest prompt accepted, in characters of all messages' contents; longer requests get HTTP 400."})
    max_new_tokens_limit: int = field(default=DEFAULT_MAX_NEW_TOKENS_LIMIT, metadata={
        "help": "Largest max_tokens a request may ask for; larger requests get HTTP 400."})
    divergence: str | None = field(default=None, metadata={
        "help": "Multi-head models (MOPO, HaM, SCA): how the heads are combined -- 'reverse_kl' (default; one "
                "output layer), 'forward_kl' or '<alpha>-divergence'. Other methods ignore it."})
    precision: str = field(default="auto", metadata={"help": "Compute precision: 'auto', 'bf16' or 'fp32'."})

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("moalign serve needs --model DIR (a folder written by `moalign train <method>`)")
        if self.max_prompt_chars < 1 or self.max_new_tokens_limit < 1:
            raise ValueError("--max_prompt_chars and --max_new_tokens_limit must be >= 1")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"--port {self.port} is not a TCP port (0..65535)")


class RequestError(Exception):
    """A request the server refuses: answered with ``status`` (400) and OpenAI's error object."""

    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.param, self.status = message, param, status

    def body(self) -> dict[str, Any]:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": None}}


class TextPart(BaseModel):
    """One part of a message's content in OpenAI's list form; only text parts are accepted."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    """One chat message: ``role`` and ``content`` (a string, or a list of text parts)."""

    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class ChatRequest(BaseModel):
    """The accepted body of ``POST /v1/chat/completions``; any other field is refused (HTTP 400)."""

    model_config = ConfigDict(extra="forbid")
    messages: list[ChatMessage] = Field(min_length=1)
    model: str | None = None
    weights: list[Number] | None = None
    max_tokens: StrictInt | None = None
    max_completion_tokens: StrictInt | None = None
    temperature: Number | None = None
    top_p: Number | None = None
    seed: StrictInt | None = None
    n: StrictInt | None = None
    stream: StrictBool | None = None


def validation_message(errors: list[dict[str, Any]]) -> tuple[str, str | None]:
    """Pydantic's errors of a request body as one sentence and the first offending parameter."""
    parts, param = [], None
    for err in errors:
        loc = [str(x) for x in err.get("loc", ()) if x != "body"]
        where = ".".join(loc) or "body"
        param = param or (loc[0] if loc else None)
        if err.get("type") == "extra_forbidden":
            parts.append(f"unknown field '{where}' (accepted: {', '.join(ChatRequest.model_fields)}; "
                         "messages have role and content)")
        elif err.get("type") == "json_invalid":
            parts.append(f"the body is not valid JSON ({err.get('ctx', {}).get('error', err.get('msg'))})")
        elif err.get("type") == "missing":
            parts.append(f"missing field '{where}'")
        else:
            parts.append(f"{where}: {err.get('msg')}")
    return "invalid request: " + "; ".join(parts), param


class PolicyServer:
    """A loaded policy answering chat requests one at a time (module docstring: one model, one lock)."""

    def __init__(self, policy: Any, max_prompt_chars: int = DEFAULT_MAX_PROMPT_CHARS,
                 max_new_tokens_limit: int = DEFAULT_MAX_NEW_TOKENS_LIMIT, divergence: str | None = None,
                 precision: str = "auto", model_id: str | None = None) -> None:
        self.policy = policy
        self.max_prompt_chars = max_prompt_chars
        self.max_new_tokens_limit = max_new_tokens_limit
        self.divergence = divergence
        self.precision = precision
        self.model_id = model_id or Path(policy.path).name
        self.created = int(time.time())
        #: held while a request's weights are set in the model and it generates
        self.lock = threading.Lock()
        self.requests_served = 0

    # ---------------------------------------------------------------- start-up and description
    def load(self) -> None:
        """Load the tokenizer and (except per-weight MODPO folders, loaded per weight) the model, once."""
        _ = self.policy.tokenizer
        if self.policy.kind != "per_weight":
            _ = self.policy.family.model

    def weight_step(self) -> float | None:
        """Grid step the method accepts (e.g. 0.1 for MO-ODPO / P-MORL), None for any point of the simplex."""
        decimals = getattr(self.policy.family, "decimals", None)
        return None if decimals is None else 10.0 ** -decimals

    def info(self) -> dict[str, Any]:
        """What the page and clients need to know: method, objectives, weight names and grid, limits."""
        return {"method": self.policy.method, "kind": self.policy.kind, "objectives": list(self.policy.objectives),
                "weight_names": list(self.policy.weight_names), "weight_step": self.weight_step(),
                "default_weights": self.default_weights(), "max_prompt_chars": self.max_prompt_chars,
                "max_new_tokens_limit": self.max_new_tokens_limit,
                "default_max_tokens": min(DEFAULT_MAX_TOKENS, self.max_new_tokens_limit)}

    def default_weights(self) -> list[float]:
        """Equal weights; on a method's grid, equal units with the remainder given to the first names."""
        k = len(self.policy.weight_names)
        step = self.weight_step()
        if step is None:
            return [1.0 / k] * k
        units = round(1 / step)
        return [(units // k + (1 if i < units % k else 0)) / units for i in range(k)]

    def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": self.model_id, "object": "model", "created": self.created,
                                            "owned_by": "moalign", "moalign": self.info()}]}

    # ---------------------------------------------------------------- one request
    def _prompt(self, request: ChatRequest) -> Any:
        """The prompt moalign generates from: the messages, or for a model trained on raw text their contents."""
        if request.messages[-1].role != "user":
            raise RequestError("the last message must have role 'user' (the server writes the assistant's answer)",
                               "messages")
        chars = sum(len(m.text()) for m in request.messages)
        if chars > self.max_prompt_chars:
            raise RequestError(f"the prompt has {chars} characters; this server accepts at most "
                               f"{self.max_prompt_chars} (--max_prompt_chars)", "messages")
        if not any(m.text().strip() for m in request.messages):
            raise RequestError("the messages are empty", "messages")
        if self.templated:
            return [{"role": m.role, "content": m.text()} for m in request.messages]
        # trained on raw text: the model continues the contents, as the exported chat template renders them
        return "".join(m.text() for m in request.messages)

    @property
    def templated(self) -> bool:
        """Whether prompts go through the chat template (as in training; then no special tokens are added)."""
        return self.policy.family.use_chat_template and has_chat_template(self.policy.tokenizer)

    def _settings(self, request: ChatRequest) -> tuple[int, float, float, int]:
        """``(max_tokens, temperature, top_p, seed)`` of a request, checked against the server's limits."""
        if request.model is not None and request.model != self.model_id:
            raise RequestError(f"model {request.model!r} is not served here; this server serves {self.model_id!r} "
                               "(GET /v1/models)", "model")
        if request.n not in (None, 1):
            raise RequestError(f"n={request.n}: this server returns one choice per request (n=1)", "n")
        if request.stream:
            raise RequestError("stream=true is not supported; send stream=false or leave it out", "stream")
        max_tokens = request.max_tokens if request.max_tokens is not None else request.max_completion_tokens
        if request.max_tokens is not None and request.max_completion_tokens is not None \
                and request.max_tokens != request.max_completion_tokens:
            raise RequestError("max_tokens and max_completion_tokens differ; give one of them", "max_tokens")
        if max_tokens is None:
            max_tokens = min(DEFAULT_MAX_TOKENS, self.max_new_tokens_limit)
        if not 1 <= max_tokens <= self.max_new_tokens_limit:
            raise RequestError(f"max_tokens={max_tokens} must be between 1 and {self.max_new_tokens_limit} "
                               "(--max_new_tokens_limit)", "max_tokens")
        temperature = 0.0 if request.temperature is None else request.temperature
        if not (math.isfinite(temperature) and 0.0 <= temperature <= 2.0):
            raise RequestError(f"temperature={temperature} must be between 0 (greedy) and 2", "temperature")
        top_p = 1.0 if request.top_p is None else request.top_p
        if not (math.isfinite(top_p) and 0.0 < top_p <= 1.0):
            raise RequestError(f"top_p={top_p} must be in (0, 1]", "top_p")
        return max_tokens, temperature, top_p, request.seed or 0

    def _weights(self, request: ChatRequest) -> tuple[float, ...]:
        weights = request.weights if request.weights is not None else self.default_weights()
        try:
            return self.policy.check_weights(weights)
        except ValueError as err:
            raise RequestError(f"{err} (weights are named {', '.join(self.policy.weight_names)})", "weights") from None

    def complete(self, request: ChatRequest) -> dict[str, Any]:
        """Answer one chat request (OpenAI's response shape plus ``moalign``); RequestError when it is refused."""
        max_tokens, temperature, top_p, seed = self._settings(request)
        weights = self._weights(request)
        prompt = self._prompt(request)
        tokenizer = self.policy.tokenizer
        # everything that touches the model or the tokenizer runs under the lock: generation pads the tokenizer
        # on the left for its call, and a fast tokenizer must not be re-configured while another thread encodes
        with self.lock:
            try:
                rendered_prompt = self.policy.prompt_texts([prompt], weights, divergence=self.divergence)[0]
                completions, finished = self.policy.generate(
                    [prompt], weights, max_new_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed,
                    divergence=self.divergence, batch_size=1, precision=self.precision, return_finished=True)
            except ValueError as err:  # a prompt this model cannot take (e.g. a chat prompt without a template)
                raise RequestError(str(err), "messages") from None
            note = self.policy.last_note
            described = self.policy.describe(weights)
            self.requests_served += 1
            prompt_tokens = len(tokenizer(rendered_prompt, add_special_tokens=not self.templated)["input_ids"])
            text, ended = completions[0], finished[0]
            # cut at max_tokens: exactly max_tokens new tokens; ended: the completion's tokens and the stop token
            completion_tokens = (len(tokenizer(text, add_special_tokens=False)["input_ids"]) + 1 if ended
                                 else max_tokens)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": self.model_id,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                         "finish_reason": "stop" if ended else "length"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
            "moalign": {"weights": list(weights), "weight_names": list(self.policy.weight_names),
                        "policy": described, "note": note},
        }


def page_html() -> str:
    """The playground page shipped with the package (``moalign/inference/static/index.html``)."""
    return (resources.files("moalign.inference") / "static" / "index.html").read_text(encoding="utf-8")


def create_app(server: PolicyServer) -> Any:
    """The FastAPI application of ``server`` (routes in the module docstring)."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse

    app = FastAPI(title="moalign serve", description="A moalign policy at any weight vector (OpenAI-compatible).")

    @app.exception_handler(RequestError)
    async def _refused(_: Request, err: RequestError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        message, param = validation_message(list(err.errors()))
        return JSONResponse(RequestError(message, param).body(), status_code=400)

    @app.exception_handler(Exception)
    async def _failed(_: Request, err: Exception) -> JSONResponse:
        return JSONResponse(RequestError(f"internal error: {type(err).__name__}: {err}", status=500).body(),
                            status_code=500)

    @app.post("/v1/chat/completions")
    def chat_completions(request: ChatRequest) -> JSONResponse:  # sync: runs in the worker thread pool
        return JSONResponse(server.complete(request))

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return server.models()

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model": server.model_id, "requests_served": server.requests_served,
                **server.info()}

    @app.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        return HTMLResponse(page_html())

    app.state.policy_server = server
    return app


class BackgroundServer:
    """A uvicorn server of ``app`` in a daemon thread (tests, benchmarks): ``with BackgroundServer(app) as url``.

    ``port`` 0 (the default) takes a free port; :attr:`url` is known once the server is listening.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, timeout: float = 30.0) -> None:
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, name="moalign-serve", daemon=True)
        self.host, self.timeout, self.url = host, timeout, ""

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + self.timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://{self.host}:{port}"
        return self.url

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(self.timeout)


def build_server(config: ServeConfig) -> PolicyServer:
    """Load the folder named by ``config`` (model and tokenizer, once) as a :class:`PolicyServer`."""
    from moalign.inference.policy import load_policy
    from moalign.models.steering import parse_divergence

    if config.divergence is not None:
        parse_divergence(config.divergence)  # a wrong name fails at start-up, not in every request
    server = PolicyServer(load_policy(config.model), max_prompt_chars=config.max_prompt_chars,
                          max_new_tokens_limit=config.max_new_tokens_limit, divergence=config.divergence,
                          precision=config.precision)
    server.load()
    return server


def run_serve(config: ServeConfig) -> None:
    """Load the model once and serve it until interrupted (Ctrl-C)."""
    import uvicorn

    server = build_server(config)
    print(f"moalign serve: {server.policy.method} model {server.model_id!r}, weights for "
          f"{', '.join(server.policy.weight_names)}; playground http://{config.host}:{config.port}/ , "
          f"OpenAI API http://{config.host}:{config.port}/v1", flush=True)
    uvicorn.run(create_app(server), host=config.host, port=config.port, log_level="info")
