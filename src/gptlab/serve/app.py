"""The HTTP server: FastAPI routes over the scheduler, speaking OpenAI's API.

    POST /v1/completions        continue a prompt        (stream: server-sent events)
    POST /v1/chat/completions   answer an instruction    (instruction runs only)
    GET  /v1/models             the one model served
    GET  /health                200 while the scheduler runs (no key needed)
    GET  /metrics               Prometheus text format

Every error is OpenAI's JSON shape, {"error": {"message", "type", "param", "code"}}: 400 for a
bad body (pydantic checks it) or a value the model cannot take, 401 without the API key, 429
when the queue is full. The event loop only waits: the model runs in the scheduler's thread,
which hands events back through `loop.call_soon_threadsafe`. A client that goes away is noticed
(it is polled while its request runs) and its sequences leave the batch before the next step.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.exceptions import HTTPException

from gptlab.errors import GptlabError
from gptlab.serve.api import Choices, ServedModel, Work
from gptlab.serve.metrics import ServerMetrics
from gptlab.serve.protocol import APIError, ChatRequest, CompletionRequest, validation_message
from gptlab.serve.scheduler import Event, QueueFull, Scheduler, Unavailable
from gptlab.serve.scheduler import Request as Job

log = logging.getLogger("gptlab.serve")

DISCONNECT_POLL = 0.1  # seconds between checks that a request's client is still there
ROUTES = ("/v1/completions", "/v1/chat/completions", "/v1/models", "/health", "/metrics")


def create_app(served: ServedModel, scheduler: Scheduler, api_key: str | None = None) -> FastAPI:
    """The FastAPI app; it starts the scheduler on startup and drains it on shutdown."""
    metrics = ServerMetrics(lambda: scheduler.queue_depth, lambda: scheduler.running)

    @asynccontextmanager
    async def lifespan(app):
        scheduler.start()
        yield
        await asyncio.to_thread(scheduler.stop)  # finishes what is running, then ends

    app = FastAPI(title="gptlab", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_middleware(CountRequests, metrics=metrics)
    add_error_handlers(app)

    async def authorized(request: Request) -> None:
        if api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        # compare_digest takes as long for a near miss as for a far one: no timing hints
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), api_key.encode()):
            raise APIError(
                401,
                "missing or wrong API key: send it as `Authorization: Bearer KEY`",
                code="invalid_api_key",
            )

    guarded = [Depends(authorized)]

    @app.get("/health")
    async def health():
        alive = scheduler.thread.is_alive()
        return JSONResponse(
            {"status": "ok" if alive else "down"}, status_code=200 if alive else 503
        )

    @app.get("/metrics", dependencies=guarded)
    async def prometheus():
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models", dependencies=guarded)
    async def models():
        return {"object": "list", "data": [served.card()]}

    @app.post("/v1/completions", dependencies=guarded)
    async def completions(body: CompletionRequest, request: Request):
        return await answer(served.completion_work(body), request)

    @app.post("/v1/chat/completions", dependencies=guarded)
    async def chat_completions(body: ChatRequest, request: Request):
        return await answer(served.chat_work(body), request)

    async def answer(work: Work, request: Request):
        run = Running(scheduler, served, work, metrics)
        if work.stream:
            return StreamingResponse(run.sse(request), media_type="text/event-stream")
        async for _ in run.events(request):
            pass
        if run.choices.error:
            raise APIError(500, run.choices.error, type="server_error")
        return run.choices.response()

    return app


class Running:
    """One request on its way through the scheduler: its events, as they come, and its metrics."""

    def __init__(self, scheduler: Scheduler, served: ServedModel, work: Work, metrics):
        self.work, self.metrics = work, metrics
        self.choices = Choices(served, work)
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        self.job = Job(
            work.prompts,
            work.config,
            emit=lambda event: loop.call_soon_threadsafe(self.queue.put_nowait, event),
            n=work.n,
            logprobs=work.logprobs,
        )
        self.arrived = time.perf_counter()
        self.first_token_at: float | None = None
        try:
            scheduler.submit(self.job)
        except QueueFull as error:
            raise APIError(429, str(error), type="rate_limit_error", code="queue_full") from None
        except Unavailable as error:
            raise APIError(503, str(error), type="server_error") from None
        metrics.prompt_tokens.inc(work.prompt_tokens)

    async def events(self, request: Request) -> AsyncIterator[Event]:
        """Yield the request's events until every choice has finished; if the client goes
        away (or the caller stops listening) first, cancel what is left."""
        remaining = self.job.choices
        checked = time.perf_counter()
        try:
            while remaining:
                event = await self._next_event()
                if time.perf_counter() - checked >= DISCONNECT_POLL:
                    checked = time.perf_counter()
                    if await request.is_disconnected():
                        return
                if event is None:
                    continue
                self._observe(event)
                if event.finish_reason:
                    remaining -= 1
                yield event
            self._observe_end()
        finally:
            if remaining:
                self.job.cancelled = True  # the scheduler frees its rows before the next step
                self.metrics.finished.inc(remaining, reason="cancelled")

    async def _next_event(self) -> Event | None:
        """The next event, or None after DISCONNECT_POLL seconds without one."""
        if not self.queue.empty():  # the common case under load: no timer, no task
            return self.queue.get_nowait()
        try:
            return await asyncio.wait_for(self.queue.get(), DISCONNECT_POLL)
        except asyncio.TimeoutError:
            return None

    async def sse(self, request: Request) -> AsyncIterator[str]:
        """The response as server-sent events: one `data: {chunk}` per piece, `data: [DONE]`."""
        started = set()
        async for event in self.events(request):
            for chunk in self.choices.chunks(event, first=event.index not in started):
                yield f"data: {json.dumps(chunk)}\n\n"
            started.add(event.index)
        if self.choices.error:
            error = APIError(500, self.choices.error, type="server_error")
            yield f"data: {json.dumps(error.body())}\n\n"
        elif self.work.include_usage:
            yield f"data: {json.dumps(self.choices.usage_chunk())}\n\n"
        yield "data: [DONE]\n\n"

    def _observe(self, event: Event) -> None:
        self.choices.add(event)
        if event.token is not None:
            self.metrics.generated_tokens.inc()
            if self.first_token_at is None:
                self.first_token_at = time.perf_counter()
                self.metrics.time_to_first_token.observe(self.first_token_at - self.arrived)
        if event.finish_reason:
            self.metrics.finished.inc(reason=event.finish_reason)

    def _observe_end(self) -> None:
        end = time.perf_counter()
        self.metrics.request_latency.observe(end - self.arrived)
        tokens = self.choices.completion_tokens
        if self.first_token_at is not None and tokens > 1:
            self.metrics.time_per_token.observe((end - self.first_token_at) / (tokens - 1))


class CountRequests:
    """ASGI middleware: count every response by endpoint and status code.

    Plain ASGI rather than `@app.middleware("http")`, whose wrapper buffers streams through a
    second task and hides a client's disconnect from the route.
    """

    def __init__(self, app, metrics: ServerMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        endpoint = scope["path"] if scope["path"] in ROUTES else "other"

        async def counting_send(message):
            if message["type"] == "http.response.start":
                self.metrics.requests.inc(endpoint=endpoint, code=str(message["status"]))
            await send(message)

        await self.app(scope, receive, counting_send)


def add_error_handlers(app: FastAPI) -> None:
    """Every error as OpenAI's JSON; never a traceback in a response."""

    @app.exception_handler(APIError)
    async def api_error(request, error: APIError):
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(GptlabError)
    async def gptlab_error(request, error: GptlabError):  # a bad value met deeper in gptlab
        return JSONResponse(APIError(400, str(error)).body(), status_code=400)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request, error: RequestValidationError):
        message, param = validation_message(list(error.errors()))
        return JSONResponse(APIError(400, message, param=param).body(), status_code=400)

    @app.exception_handler(HTTPException)
    async def http_error(request, error: HTTPException):
        return JSONResponse(
            APIError(error.status_code, str(error.detail)).body(), status_code=error.status_code
        )

    @app.exception_handler(Exception)
    async def unexpected(request, error: Exception):
        log.exception("unexpected error answering %s", request.url.path)
        body = APIError(500, "internal server error", type="server_error").body()
        return JSONResponse(body, status_code=500)
