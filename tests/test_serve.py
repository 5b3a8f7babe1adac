"""`gptlab serve`: the real server on 127.0.0.1, driven by the official `openai` client and by
raw HTTP requests, against the library's own decoding of the same model.

Each server runs in a thread of this process (uvicorn on a socket bound to a free port), with a
tiny random model and a character tokenizer, so every test is quick. The scheduler's tests
compare its batched decoding with `generate`, which decodes each prompt alone.
"""

from __future__ import annotations

import json
import socket
import string
import threading
import time

import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

import uvicorn  # noqa: E402

from gptlab import cli  # noqa: E402
from gptlab.config import GPTConfig  # noqa: E402
from gptlab.generation import GenerationConfig, generate, generate_text  # noqa: E402
from gptlab.models.gpt import GPT  # noqa: E402
from gptlab.serve.api import ServedModel  # noqa: E402
from gptlab.serve.app import create_app  # noqa: E402
from gptlab.serve.scheduler import Scheduler  # noqa: E402
from gptlab.tasks.instruction import instruction_prompt, response_config  # noqa: E402
from gptlab.tokenizers.char import CharTokenizer  # noqa: E402

TOKENIZER = CharTokenizer.from_text(string.printable)
INSTRUCT_INFO = {"config": {"task": "instruct", "data": {"prompt_format": "alpaca"}}}
PROMPTS = ["ROMEO:", "To be, or not", "a", "The quick brown fox jumps"]


def tiny_model(context: int = 256) -> GPT:
    torch.manual_seed(0)
    config = GPTConfig(
        vocab_size=TOKENIZER.vocab_size, context_length=context, n_layer=2, n_head=2, n_embd=32
    )
    model = GPT(config)
    with torch.no_grad():
        for p in model.parameters():  # wide weights: peaked, varied predictions (no ties)
            p.normal_(std=0.3)
        model.wpe.weight *= 4
    return model.eval()


class Server:
    """A scheduler and its app, served by uvicorn in a thread on a free port of 127.0.0.1."""

    def __init__(self, model, info=None, *, name="tiny", api_key=None, max_batch=4, max_queue=8):
        self.model = model
        self.scheduler = Scheduler(model, TOKENIZER, max_batch=max_batch, max_queue=max_queue)
        served = ServedModel(name, model, TOKENIZER, info or {}, max_queue, max_beams=max_batch)
        app = create_app(served, self.scheduler, api_key=api_key)
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]})

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(30)

    def client(self, **kw) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=kw.pop("api_key", "none"), **kw)

    def metric(self, name: str) -> float:
        """The value of one sample of GET /metrics (0 when the series does not exist yet)."""
        for line in httpx.get(f"{self.url}/metrics").text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        return 0.0

    def slow_down(self, seconds: float) -> None:
        """Make each decode step take at least `seconds`: long requests stay running."""
        step = self.scheduler.decoder.step

        def slow_step(token):
            time.sleep(seconds)
            return step(token)

        self.scheduler.decoder.step = slow_step

    def wait_for(self, name: str, value: float, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while self.metric(name) != value:
            assert time.monotonic() < deadline, f"{name} never reached {value}"
            time.sleep(0.02)


@pytest.fixture(scope="module")
def model() -> GPT:
    return tiny_model()


@pytest.fixture(scope="module")
def server(model):
    with Server(model) as running:
        yield running


@pytest.fixture(scope="module")
def chat_server():
    with Server(tiny_model(), INSTRUCT_INFO, name="instruct") as running:
        yield running


def greedy_text(model, prompt: str, max_tokens: int, **changes) -> str:
    config = GenerationConfig(max_new_tokens=max_tokens, strategy="greedy", **changes)
    return generate_text(model, TOKENIZER, [prompt], config)[0]


# -- the openai client ------------------------------------------------------------------------


def test_a_greedy_completion_is_what_the_library_generates(server, model):
    result = server.client().completions.create(
        model="tiny", prompt="ROMEO:", max_tokens=20, temperature=0
    )
    assert result.choices[0].text == greedy_text(model, "ROMEO:", 20)
    assert result.choices[0].finish_reason == "length"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (6, 20)


def test_a_stream_adds_up_to_the_whole_completion_and_ends_with_usage(server, model):
    chunks = list(
        server.client().completions.create(
            model="tiny",
            prompt="To be, or not",
            max_tokens=15,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(chunk.choices[0].text for chunk in chunks if chunk.choices)
    assert text == greedy_text(model, "To be, or not", 15)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 15


def test_a_stop_string_ends_the_text_just_before_it(server, model):
    whole = greedy_text(model, "ROMEO:", 30)
    stop = whole[12:14]  # a stop string that appears in the greedy text
    result = server.client().completions.create(
        model="tiny", prompt="ROMEO:", max_tokens=30, temperature=0, stop=[stop]
    )
    assert result.choices[0].text == whole[: whole.index(stop)]
    assert result.choices[0].finish_reason == "stop"


def test_logprobs_are_the_models_own_log_probabilities(server, model):
    result = server.client().completions.create(
        model="tiny", prompt="a", max_tokens=6, temperature=0, logprobs=3
    )
    logprobs = result.choices[0].logprobs
    ids = TOKENIZER.encode("a" + result.choices[0].text)
    with torch.no_grad():
        logits, _ = model(torch.tensor([ids]), all_logits=True)
    expected = logits[0, :-1].log_softmax(-1)[torch.arange(len(ids) - 1), torch.tensor(ids[1:])]
    assert "".join(logprobs.tokens) == result.choices[0].text
    # (not torch.testing.assert_close: its first call imports for seconds)
    assert (torch.tensor(logprobs.token_logprobs) - expected).abs().max() < 1e-4
    # greedy: each token is the most likely of its top 3
    assert all(
        len(top) == 3 and max(top.values()) == lp
        for top, lp in zip(logprobs.top_logprobs, logprobs.token_logprobs)
    )


def test_n_seeded_samples_are_those_of_generate_with_seeds_seed_plus_j(server, model):
    result = server.client().completions.create(
        model="tiny", prompt="ROMEO:", max_tokens=12, temperature=0.9, top_p=0.95, n=2, seed=7
    )
    ids = TOKENIZER.encode("ROMEO:")
    for j, choice in enumerate(result.choices):
        config = GenerationConfig(max_new_tokens=12, temperature=0.9, top_p=0.95, seed=7 + j)
        assert TOKENIZER.encode(choice.text) == generate(model, [ids], config)[0]
    assert result.choices[0].text != result.choices[1].text


def test_chat_answers_in_the_instruction_format_the_run_was_trained_with(chat_server):
    client = chat_server.client()
    messages = [{"role": "system", "content": "Name a colour."}, {"role": "user", "content": "ok"}]
    prompt = instruction_prompt(INSTRUCT_INFO["config"], "Name a colour.", "ok")
    config = response_config(GenerationConfig(max_new_tokens=10, strategy="greedy"))
    expected = generate_text(chat_server.model, TOKENIZER, [prompt], config)[0]
    answer = client.chat.completions.create(
        model="instruct", messages=messages, max_tokens=10, temperature=0, logprobs=True
    )
    assert answer.choices[0].message.content == expected
    assert "".join(entry.token for entry in answer.choices[0].logprobs.content) == expected
    chunks = client.chat.completions.create(
        model="instruct", messages=messages, max_tokens=10, temperature=0, stream=True
    )
    deltas = [chunk.choices[0].delta for chunk in chunks]
    assert deltas[0].role == "assistant"
    assert "".join(delta.content or "" for delta in deltas) == expected


def test_models_lists_the_served_model(server):
    assert [model.id for model in server.client().models.list()] == ["tiny"]


# -- bad requests ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, param, code",
    [
        ({"model": "tiny", "prompt": "a", "temperature": -0.5}, "temperature", None),
        ({"model": "gpt-4", "prompt": "a"}, "model", "model_not_found"),
        ({"model": "tiny", "prompt": "a" * 256}, "prompt", "context_length_exceeded"),
        ({"model": "tiny", "prompt": "a" * 200, "max_tokens": 60}, "max_tokens", None),
        ({"model": "tiny", "prompt": "a", "top_p": 0}, "top_p", None),
        ({"model": "tiny", "prompt": "a", "best_of": 2}, "best_of", None),
        ({"model": "tiny", "prompt": "\u00e9"}, "prompt", None),  # not in the vocabulary
        ({"model": "tiny", "prompt": [999]}, None, None),  # a token id past the vocabulary
        ({"model": "tiny", "prompt": "a", "stop": ["", "x"]}, "stop", None),
        ({"model": "tiny", "prompt": "a", "n": 9}, "n", None),  # more than the queue holds
        ({"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}, "prompt", None),
    ],
)
def test_bad_values_are_400_with_an_openai_error(server, body, param, code):
    response = httpx.post(f"{server.url}/v1/completions", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    assert "Traceback" not in response.text
    if param:
        assert error["param"].startswith(param)
    if code:
        assert error["code"] == code


def test_malformed_json_and_wrong_types_are_400(server):
    for content in (b'{"model": "tiny", "prompt": ', b"[1, 2]", b'{"model": 3, "prompt": "a"}'):
        response = httpx.post(
            f"{server.url}/v1/completions",
            content=content,
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 400
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_chat_with_a_model_that_is_not_an_instruction_run_is_400(server):
    response = httpx.post(
        f"{server.url}/v1/chat/completions",
        json={"model": "tiny", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 400
    assert "not an instruction run" in response.json()["error"]["message"]


def test_an_api_key_is_required_when_set(model):
    with Server(model, api_key="s3cret") as server:
        body = {"model": "tiny", "prompt": "a", "max_tokens": 2}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            response = httpx.post(f"{server.url}/v1/completions", json=body, headers=headers)
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "invalid_api_key"
        assert httpx.get(f"{server.url}/health").status_code == 200  # liveness needs no key
        with pytest.raises(openai.AuthenticationError):
            server.client(api_key="wrong").models.list()
        completion = server.client(api_key="s3cret").completions.create(**body)
        assert completion.usage.completion_tokens == 2


# -- load: batching, the queue, disconnects ---------------------------------------------------


def test_concurrent_requests_are_batched_and_each_gets_its_greedy_text(model):
    """Six requests, four rows: they join and leave the batch while others run, and each one's
    text is the one it gets alone."""
    lengths = [25, 8, 40, 13, 30, 5]
    prompts = [PROMPTS[i % 4] for i in range(6)]
    with Server(model, max_batch=4) as server:
        sizes = []
        step = server.scheduler.decoder.step

        def counting_step(token):
            sizes.append(server.scheduler.running)
            return step(token)

        server.scheduler.decoder.step = counting_step
        client = server.client()
        results = [None] * 6

        def ask(i):
            results[i] = client.completions.create(
                model="tiny", prompt=prompts[i], max_tokens=lengths[i], temperature=0
            )

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    for i in range(6):
        assert results[i].choices[0].text == greedy_text(model, prompts[i], lengths[i])
    assert max(sizes) > 1  # some steps decoded several requests together


def test_a_full_queue_answers_429(model):
    with Server(model, max_batch=1, max_queue=1) as server:
        server.slow_down(0.02)
        body = {"model": "tiny", "prompt": "a", "max_tokens": 200, "stream": True}
        url = f"{server.url}/v1/completions"
        with httpx.stream("POST", url, json=body):  # runs
            server.wait_for("gptlab_running_sequences", 1)
            with httpx.stream("POST", url, json=body):  # waits
                server.wait_for("gptlab_queue_depth", 1)
                response = httpx.post(url, json=body)
                assert response.status_code == 429
                assert response.json()["error"]["code"] == "queue_full"


def test_a_client_that_disconnects_mid_stream_frees_its_row(model):
    with Server(model, max_batch=1) as server:
        server.slow_down(0.02)  # 200 tokens would take 4 s
        body = {"model": "tiny", "prompt": "a", "max_tokens": 200, "stream": True}
        with httpx.stream("POST", f"{server.url}/v1/completions", json=body) as response:
            lines = response.iter_lines()
            first = next(line for line in lines if line.startswith("data:"))
            assert json.loads(first[5:])["choices"][0]["text"] is not None
        server.wait_for("gptlab_running_sequences", 0, timeout=2)
        assert server.metric('gptlab_sequences_finished_total{reason="cancelled"}') == 1
        done = server.client().completions.create(model="tiny", prompt="a", max_tokens=3)
        assert done.usage.completion_tokens == 3


def test_metrics_are_prometheus_text(server):
    server.client().completions.create(model="tiny", prompt="a", max_tokens=4)
    text = httpx.get(f"{server.url}/metrics").text
    assert "# TYPE gptlab_time_to_first_token_seconds histogram" in text
    assert 'gptlab_requests_total{code="200",endpoint="/v1/completions"}' in text
    assert server.metric("gptlab_generated_tokens_total") >= 4
    assert server.metric('gptlab_time_per_output_token_seconds_bucket{le="+Inf"}') >= 1


# -- the command ----------------------------------------------------------------------------


def test_serve_without_fastapi_says_how_to_install_it(monkeypatch, capsys, tmp_path):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "fastapi" else find_spec(name)
    )
    assert cli.main(["serve", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "pip install 'gptlab[serve]'" in error and len(error.strip().splitlines()) == 1


def test_serve_refuses_bad_flags_in_one_line(capsys, tmp_path):
    assert cli.main(["serve", str(tmp_path), "--max-batch", "0"]) == 2
    assert "--max-batch must be at least 1" in capsys.readouterr().err


def test_shutdown_lets_running_requests_finish_then_stops_the_scheduler(model):
    """What Ctrl-C does (uvicorn's signal handler sets should_exit): no new connections, the
    running stream ends normally, then the scheduler thread ends."""
    server = Server(model, max_batch=1).__enter__()
    server.slow_down(0.01)
    body = {"model": "tiny", "prompt": "a", "max_tokens": 30, "stream": True}
    with httpx.stream("POST", f"{server.url}/v1/completions", json=body) as response:
        lines = response.iter_lines()
        next(line for line in lines if line.startswith("data:"))
        server.server.should_exit = True
        rest = [line for line in lines if line.startswith("data:")]
    assert rest[-1] == "data: [DONE]"
    assert json.loads(rest[-2][5:])["choices"][0]["finish_reason"] == "length"
    server.thread.join(30)
    assert not server.thread.is_alive() and not server.scheduler.thread.is_alive()


def test_an_error_met_deeper_in_gptlab_is_a_400_not_a_500(model):
    """A run whose prompt format this gptlab does not know: ConfigError, answered as a 400."""
    info = {"config": {"task": "instruct", "data": {"prompt_format": "chatml"}}}
    with Server(model, info, name="odd") as server:
        body = {"model": "odd", "messages": [{"role": "user", "content": "hi"}]}
        response = httpx.post(f"{server.url}/v1/chat/completions", json=body)
    assert response.status_code == 400
    assert "prompt format 'chatml'" in response.json()["error"]["message"]
