"""Running the server: a model loaded as every command loads it, behind uvicorn."""

from __future__ import annotations

import importlib.util
import ipaddress
import logging
from dataclasses import dataclass
from pathlib import Path

from gptlab.errors import ConfigError

INSTALL_HINT = "pip install 'gptlab[serve]' (or `uv sync --extra serve`)"


def check_serving_dependencies() -> None:
    """One clear error when FastAPI or uvicorn is missing, before anything slow happens."""
    missing = [name for name in ("fastapi", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"serving needs {' and '.join(missing)}: {INSTALL_HINT}")


@dataclass
class ServeConfig:
    """How to serve: where to listen, who may ask, how much to batch and queue."""

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    max_batch: int = 8
    max_queue: int = 64
    compile: bool = False
    model_name: str | None = None  # the name clients ask for (default: the MODEL argument's)

    def __post_init__(self):
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be in 0..65535, got {self.port}")
        if self.max_batch < 1:
            raise ConfigError(f"--max-batch must be at least 1, got {self.max_batch}")
        if self.max_queue < 1:
            raise ConfigError(f"--max-queue must be at least 1, got {self.max_queue}")
        if self.api_key is not None and not self.api_key.strip():
            raise ConfigError("the API key is empty: give a non-empty --api-key, or none")

    @property
    def public(self) -> bool:
        """Whether the server listens beyond this machine."""
        if self.host == "localhost":
            return False
        try:
            return not ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return True  # a host name: it may resolve to anything


def served_name(spec: str) -> str:
    """The name clients ask for a model by: a path's last component, or the hub name."""
    path = Path(str(spec))
    return path.name if path.exists() and path.name else str(spec)


def build_app(model, tokenizer, info: dict, config: ServeConfig):
    """The FastAPI app serving `model` (from `load_model`), its scheduler included."""
    from gptlab.serve.api import ServedModel
    from gptlab.serve.app import create_app
    from gptlab.serve.scheduler import Scheduler

    served = ServedModel(
        config.model_name or "gptlab",
        model,
        tokenizer,
        info,
        config.max_queue,
        max_beams=config.max_batch,
    )
    scheduler = Scheduler(
        model,
        tokenizer,
        max_batch=config.max_batch,
        max_queue=config.max_queue,
        compile=config.compile,
    )
    return create_app(served, scheduler, api_key=config.api_key)


def run_server(app, config: ServeConfig) -> None:
    """Serve until Ctrl-C; then stop taking connections, let running requests finish, and end."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_level="info",
            timeout_graceful_shutdown=60,  # the longest wait for running requests to finish
        )
    ).run()
