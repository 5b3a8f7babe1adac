"""The request bodies the server accepts, as pydantic models, and its OpenAI-shaped errors.

Field names, defaults and limits follow OpenAI's API reference for completions and chat
completions, so its clients work unchanged; gptlab's own decoding options (`top_k`, `min_p`,
`repetition_penalty`, `no_repeat_ngram_size`, and beam search's `num_beams`, `length_penalty`,
`early_stopping`) are accepted beside them under gptlab's names (the `openai` client sends them
with `extra_body=`). An unknown field is an error rather than
silently ignored: a misspelt option should not quietly decode with the default.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_STOPS = 4  # as OpenAI's API


class APIError(Exception):
    """An error answered as OpenAI does: an HTTP status and {"error": {message, type, param,
    code}}."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = (
            status,
            message,
            type,
            param,
            code,
        )

    def body(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class DecodingOptions(BaseModel):
    """The fields completions and chat completions share."""

    model_config = ConfigDict(extra="forbid")

    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    n: int = Field(1, ge=1, le=32)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    # OpenAI's additive penalties have no gptlab counterpart: 0 (their default) only.
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    # gptlab's own decoding options
    top_k: int | None = Field(None, ge=1)
    min_p: float | None = Field(None, ge=0, le=1)
    repetition_penalty: float = Field(1.0, gt=0)
    no_repeat_ngram_size: int = Field(0, ge=0)
    # beam search (num_beams > 1), as `gptlab sample --strategy beam`; `ServedModel` checks
    # what it may be combined with
    num_beams: int = Field(1, ge=1)
    length_penalty: float = Field(1.0, allow_inf_nan=False)
    early_stopping: bool = False

    @field_validator("stop")
    @classmethod
    def _stops(cls, stop):
        stops = [stop] if isinstance(stop, str) else (stop or [])
        if len(stops) > MAX_STOPS or any(not s for s in stops):
            raise ValueError(f"stop takes up to {MAX_STOPS} non-empty strings")
        return stops

    @field_validator("presence_penalty", "frequency_penalty")
    @classmethod
    def _no_additive_penalties(cls, value):
        if value != 0:
            raise ValueError("not supported; use gptlab's repetition_penalty (> 1 penalises)")
        return value


class CompletionRequest(DecodingOptions):
    """POST /v1/completions: continue a prompt (text, several texts, or token ids)."""

    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(16, ge=1)  # OpenAI's default for completions
    logprobs: int | None = Field(None, ge=0, le=5)
    echo: Literal[False] = False


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: str
    name: str | None = None


class ChatRequest(DecodingOptions):
    """POST /v1/chat/completions: answer the last user message of an instruction run."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)  # the newer name of max_tokens
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)


def validation_message(errors: list[dict]) -> tuple[str, str | None]:
    """One readable line (and the offending field) from pydantic's list of errors."""
    first = errors[0]
    location = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = ".".join(location) or None
    if first.get("type") == "json_invalid":
        return "the request body is not valid JSON", None
    message = first.get("msg", "invalid value")
    return (f"{param}: {message}" if param else message), param
