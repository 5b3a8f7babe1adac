"""From OpenAI-style requests to the scheduler's work, and from its events to OpenAI responses.

`ServedModel` checks a request against the model (its name, context, vocabulary, task), turns
it into prompts of token ids and a `GenerationConfig`, and `Choices` gathers the events of one
request into the response body, or into the chunks of a stream. Nothing here knows HTTP:
`app.py` does that.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from gptlab.errors import ConfigError, GptlabError
from gptlab.generation import GenerationConfig
from gptlab.generation.decoder import prepare_prompts
from gptlab.generation.streaming import with_tokenizer_eos
from gptlab.serve.protocol import APIError, ChatRequest, CompletionRequest
from gptlab.serve.scheduler import Event


@dataclass
class Work:
    """What the scheduler is to do for one request, and what the response needs to know."""

    kind: str  # "completion" or "chat"
    prompts: list[list[int]]
    config: GenerationConfig
    n: int
    logprobs: int | None  # top tokens to report per token; None: no logprobs
    stream: bool
    include_usage: bool

    @property
    def prompt_tokens(self) -> int:
        return sum(len(prompt) for prompt in self.prompts)


class ServedModel:
    """The model behind the API: its name, tokenizer and limits, and how requests ask it."""

    def __init__(self, name: str, model, tokenizer, info: dict, max_queue: int, *, max_beams: int):
        self.name = name
        self.tokenizer = tokenizer
        self.info = info
        self.context_length = model.config.context_length
        self.vocab_size = model.config.vocab_size
        self.max_queue = max_queue
        self.max_beams = max_beams  # the batch's rows: a beam search takes num_beams of its own
        self.created = int(time.time())
        self._token_texts: dict[int, str] = {}

    @property
    def is_instruction_run(self) -> bool:
        from gptlab.tasks.instruction import is_instruction_run

        return is_instruction_run(self.info)

    def card(self) -> dict:
        """The model as GET /v1/models lists it."""
        return {"id": self.name, "object": "model", "created": self.created, "owned_by": "gptlab"}

    def completion_work(self, body: CompletionRequest) -> Work:
        self._check_model(body.model)
        self._check_beams(body, logprobs=body.logprobs is not None)
        prompts = self._encode_prompts(body.prompt)
        # Left out, max_tokens is OpenAI's 16, or less where the context leaves less room.
        max_tokens = body.max_tokens if "max_tokens" in body.model_fields_set else None
        config = self._config(body, prompts, max_tokens, cap=body.max_tokens)
        return self._work("completion", body, prompts, config, body.logprobs)

    def chat_work(self, body: ChatRequest) -> Work:
        """An instruction run answers one exchange in the prompt format it was trained with:
        a system message is the instruction and the user message its input, or the user
        message alone is the instruction (as `gptlab.data.instructions.from_messages` reads a
        chat file)."""
        from gptlab.tasks.instruction import instruction_prompt, response_config

        self._check_model(body.model)
        self._check_beams(body, logprobs=body.logprobs)
        if not self.is_instruction_run:
            raise APIError(
                400,
                f"{self.name} is not an instruction run, so it has no chat format: use "
                "/v1/completions, or serve a run made by `gptlab finetune instruct`",
                param="messages",
            )
        roles = [message.role for message in body.messages]
        if roles not in (["user"], ["system", "user"]):
            raise APIError(
                400,
                f"messages with roles {roles}: an instruction run answers one exchange, "
                "[system,] user",
                param="messages",
            )
        contents = [message.content for message in body.messages]
        instruction, input = (contents[0], "") if len(contents) == 1 else contents
        prompt = instruction_prompt(self.info["config"], instruction, input)
        prompts = self._encode_prompts(prompt)
        max_tokens = body.max_completion_tokens or body.max_tokens
        config = response_config(self._config(body, prompts, max_tokens, cap=None))
        logprobs = (body.top_logprobs or 0) if body.logprobs else None
        return self._work("chat", body, prompts, config, logprobs)

    def token_text(self, token: int) -> str:
        """A token's own text (a partial UTF-8 character shows as U+FFFD)."""
        if token not in self._token_texts:
            self._token_texts[token] = self.tokenizer.decode([token])
        return self._token_texts[token]

    # -- checks -----------------------------------------------------------------------------

    def _check_model(self, name: str) -> None:
        if name != self.name:
            raise APIError(
                400,
                f"unknown model {name!r}: this server serves {self.name!r}",
                param="model",
                code="model_not_found",
            )

    def _check_beams(self, body, logprobs: bool) -> None:
        """Beam search options only with beam search, and beam search only with what it can
        honour: it keeps the most likely continuations (no sampling, so no temperature, top_p,
        top_k or min_p), scores whole hypotheses (no per-token logprobs), and has num_beams
        hypotheses to give (n <= num_beams)."""
        if body.num_beams == 1:
            for name, neutral in (("length_penalty", 1.0), ("early_stopping", False)):
                if getattr(body, name) != neutral:
                    raise APIError(
                        400, f"{name} applies to beam search only: set num_beams > 1", param=name
                    )
            return
        if body.num_beams > self.max_beams:
            raise APIError(
                400,
                f"num_beams is {body.num_beams}, but a beam search here may use at most "
                f"{self.max_beams} beams (the rows of the server's batch, --max-batch)",
                param="num_beams",
            )
        sampling = {
            # OpenAI's default temperature is 1: only a temperature the client chose is refused.
            "temperature": "temperature" in body.model_fields_set and body.temperature > 0,
            "top_p": body.top_p < 1,
            "top_k": body.top_k is not None,
            "min_p": body.min_p is not None,
        }
        for name, asked in sampling.items():
            if asked:
                raise APIError(
                    400,
                    f"{name} shapes sampling, but beam search (num_beams > 1) samples nothing: "
                    f"it keeps the most likely continuations; leave {name} out"
                    + (" or set it to 0" if name == "temperature" else ""),
                    param=name,
                )
        if logprobs:
            raise APIError(
                400,
                "logprobs are not given with beam search: it scores whole hypotheses, not the "
                "tokens of one; leave logprobs out, or use num_beams 1",
                param="logprobs",
            )
        if body.n > body.num_beams:
            raise APIError(
                400,
                f"n is {body.n}, but a search of {body.num_beams} beams finds {body.num_beams} "
                "hypotheses: ask for n <= num_beams",
                param="n",
            )

    def _encode_prompts(self, prompt) -> list[list[int]]:
        try:
            if isinstance(prompt, str):
                prompts = [self.tokenizer.encode(prompt)]
            elif prompt and all(isinstance(item, int) for item in prompt):
                prompts = [list(prompt)]
            elif prompt and all(isinstance(item, str) for item in prompt):
                prompts = [self.tokenizer.encode(text) for text in prompt]
            else:
                prompts = [list(ids) for ids in prompt]
        except GptlabError as error:  # text the tokenizer cannot encode
            raise APIError(400, str(error), param="prompt") from None
        if not prompts:
            raise APIError(400, "prompt is an empty list", param="prompt")
        for ids in prompts:
            if len(ids) >= self.context_length:
                raise APIError(
                    400,
                    f"the prompt has {len(ids)} tokens, which leaves no room in the model's "
                    f"context of {self.context_length} tokens",
                    param="prompt",
                    code="context_length_exceeded",
                )
        return prompts

    def _config(self, body, prompts, max_tokens: int | None, cap: int | None) -> GenerationConfig:
        """The decoding settings; max_tokens None means as many as the context leaves (at most
        `cap`). An explicit max_tokens past the context is an error, as OpenAI's API makes it."""
        room = self.context_length - max(len(prompt) for prompt in prompts)
        if max_tokens is None:
            max_tokens = min(room, cap or room)
        elif max_tokens > room:
            raise APIError(
                400,
                f"max_tokens is {max_tokens}, but the prompt leaves room for {room} tokens in the "
                f"model's context of {self.context_length}",
                param="max_tokens",
                code="context_length_exceeded",
            )
        try:
            config = GenerationConfig(
                max_new_tokens=max_tokens,
                # at temperature 0, sampling is greedy
                strategy="beam" if body.num_beams > 1 else "sample",
                temperature=body.temperature,
                top_k=body.top_k,
                top_p=body.top_p if body.top_p < 1 else None,
                min_p=body.min_p,
                repetition_penalty=body.repetition_penalty,
                no_repeat_ngram_size=body.no_repeat_ngram_size,
                num_beams=body.num_beams,
                length_penalty=body.length_penalty,
                early_stopping=body.early_stopping,
                stop=tuple(body.stop or ()),
                seed=body.seed,
            )
            config = with_tokenizer_eos(config, self.tokenizer)
            # token ids in range, empty prompts start at EOS (as GPT-2 saw every document start)
            prompts[:] = prepare_prompts(prompts, config, self.vocab_size, self.context_length)
        except ConfigError as error:
            raise APIError(400, str(error)) from None
        return config

    def _work(self, kind, body, prompts, config, logprobs) -> Work:
        choices = len(prompts) * body.n
        if choices > self.max_queue:
            raise APIError(
                400,
                f"{choices} continuations asked for; this server queues at most {self.max_queue}",
                param="n",
            )
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return Work(kind, prompts, config, body.n, logprobs, body.stream, include_usage)


class Choices:
    """The events of one request, gathered into OpenAI's response or stream chunks."""

    def __init__(self, served: ServedModel, work: Work):
        self.served, self.work = served, work
        chat = work.kind == "chat"
        self.id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        self.object = "chat.completion" if chat else "text_completion"
        self.created = int(time.time())
        count = len(work.prompts) * work.n
        self.texts = [[] for _ in range(count)]
        self.tokens = [[] for _ in range(count)]
        self.logprobs = [[] for _ in range(count)]  # (token, logprob, top) per token
        self.finish_reasons: list[str | None] = [None] * count
        self.error: str | None = None

    @property
    def completion_tokens(self) -> int:
        return sum(len(tokens) for tokens in self.tokens)

    def add(self, event: Event) -> None:
        i = event.index
        self.texts[i].append(event.text)
        if event.token is not None:
            self.tokens[i].append(event.token)
            if event.logprob is not None:
                self.logprobs[i].append((event.token, event.logprob, event.top))
        if event.finish_reason:
            self.finish_reasons[i] = event.finish_reason
        if event.error:
            self.error = event.error

    def usage(self) -> dict:
        prompt = self.work.prompt_tokens
        completion = self.completion_tokens
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def response(self) -> dict:
        """The whole answer, once every choice has finished."""
        choices = []
        for i, pieces in enumerate(self.texts):
            text = "".join(pieces)
            choice = {"index": i, "finish_reason": self.finish_reasons[i]}
            if self.work.kind == "chat":
                choice["message"] = {"role": "assistant", "content": text}
            else:
                choice["text"] = text
            choice["logprobs"] = self._logprobs(self.logprobs[i], text_start=0)
            choices.append(choice)
        return {**self._head(), "choices": choices, "usage": self.usage()}

    def chunks(self, event: Event, first: bool) -> list[dict]:
        """The stream chunks one event makes (none for a token whose text is held back)."""
        chunks = []
        i = event.index
        if first and self.work.kind == "chat":
            chunks.append(self._chunk(i, {"role": "assistant", "content": ""}, None, None))
        entries = [(event.token, event.logprob, event.top)] if event.logprob is not None else []
        if event.text or entries or event.finish_reason:
            delta = {"content": event.text} if self.work.kind == "chat" else event.text
            offset = len("".join(self.texts[i])) - len(event.text)
            logprobs = self._logprobs(entries, text_start=offset) if entries else None
            chunks.append(self._chunk(i, delta, event.finish_reason, logprobs))
        return chunks

    def usage_chunk(self) -> dict:
        return {**self._head(chunk=True), "choices": [], "usage": self.usage()}

    # -- shapes ---------------------------------------------------------------------------

    def _head(self, chunk: bool = False) -> dict:
        kind = "chat.completion.chunk" if chunk and self.work.kind == "chat" else self.object
        return {"id": self.id, "object": kind, "created": self.created, "model": self.served.name}

    def _chunk(self, index: int, delta, finish_reason, logprobs) -> dict:
        choice = {"index": index, "finish_reason": finish_reason, "logprobs": logprobs}
        if self.work.kind == "chat":
            choice["delta"] = delta
        else:
            choice["text"] = delta
        return {**self._head(chunk=True), "choices": [choice]}

    def _logprobs(self, entries: list, text_start: int) -> dict | None:
        """OpenAI's logprobs object: chat's list of {token, logprob, bytes, top_logprobs}, or
        completions' parallel lists (tokens, token_logprobs, top_logprobs, text_offset)."""
        if self.work.logprobs is None:
            return None
        text = self.served.token_text
        if self.work.kind == "chat":
            return {
                "content": [
                    {
                        **_token_entry(text(token), logprob),
                        "top_logprobs": [_token_entry(text(t), lp) for t, lp in top],
                    }
                    for token, logprob, top in entries
                ]
            }
        offsets, position = [], text_start
        for token, _, _ in entries:
            offsets.append(position)
            position += len(text(token))
        return {
            "tokens": [text(token) for token, _, _ in entries],
            "token_logprobs": [logprob for _, logprob, _ in entries],
            "top_logprobs": [{text(t): lp for t, lp in top} for _, _, top in entries],
            "text_offset": offsets,
        }


def _token_entry(text: str, logprob: float) -> dict:
    return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}
