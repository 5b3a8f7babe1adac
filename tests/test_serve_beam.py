"""Beam search through `gptlab serve`: the real server on 127.0.0.1 and the official `openai`
client (gptlab's options in `extra_body`), against the library's own beam search of the same
model and prompt, token for token.

The servers, the tiny model and its character tokenizer are those of `test_serve.py`.
"""

from __future__ import annotations

import threading
import time

import pytest
import torch
from test_serve import INSTRUCT_INFO, TOKENIZER, Server, httpx, tiny_model

from gptlab.generation import Decoder, GenerationConfig, beam_hypotheses, generate, generate_text
from gptlab.tasks.instruction import instruction_prompt, response_config

BEAMS = {"num_beams": 4, "length_penalty": 0.5}


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def server(model):
    with Server(model) as running:
        yield running


def beam_config(max_tokens: int, **changes) -> GenerationConfig:
    return GenerationConfig(max_new_tokens=max_tokens, strategy="beam", **{**BEAMS, **changes})


def beam_tokens(model, prompt: str, max_tokens: int, **changes) -> list[int]:
    """What `gptlab sample --strategy beam` decodes: `generate`'s beam search."""
    return generate(model, [TOKENIZER.encode(prompt)], beam_config(max_tokens, **changes))[0]


def slow_down_beams(server: Server, seconds: float) -> list[float]:
    """Make each step of the server's beam searches take at least `seconds`; the list it returns
    gets the time of each step."""
    decoder, times = server.scheduler.beam_decoder, []
    step = decoder.step

    def slow_step(token):
        times.append(time.monotonic())
        time.sleep(seconds)
        return step(token)

    decoder.step = slow_step
    return times


def test_a_beam_completion_is_the_librarys_beam_search(server, model):
    tokens_before = server.metric("gptlab_generated_tokens_total")
    result = server.client().completions.create(
        model="tiny", prompt="ROMEO:", max_tokens=20, temperature=0, extra_body=BEAMS
    )
    choice = result.choices[0]
    expected = beam_tokens(model, "ROMEO:", 20)
    assert TOKENIZER.encode(choice.text) == expected
    assert (
        expected != generate(model, [TOKENIZER.encode("ROMEO:")], beam_config(20, num_beams=1))[0]
    )
    assert choice.finish_reason == "length" and choice.logprobs is None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (6, 20)
    assert server.metric("gptlab_generated_tokens_total") == tokens_before + 20


def test_n_asks_for_the_best_hypotheses_of_each_prompts_search(server, model):
    prompts = ["ROMEO:", "To be, or not"]
    result = server.client().completions.create(
        model="tiny", prompt=prompts, max_tokens=12, n=3, extra_body=BEAMS
    )
    decoder = Decoder(model)
    with torch.inference_mode():
        expected = [
            tokens
            for prompt in prompts
            for tokens in beam_hypotheses(
                decoder, torch.tensor([TOKENIZER.encode(prompt)]), None, beam_config(12), 3
            )[0]
        ]
    assert [TOKENIZER.encode(choice.text) for choice in result.choices] == expected
    assert [choice.index for choice in result.choices] == list(range(6))
    assert result.choices[0].text == TOKENIZER.decode(beam_tokens(model, "ROMEO:", 12))
    assert len({choice.text for choice in result.choices[:3]}) == 3
    assert result.usage.completion_tokens == 6 * 12


def test_a_beam_stream_is_the_whole_text_then_usage_then_done(server, model):
    chunks = list(
        server.client().completions.create(
            model="tiny",
            prompt="a",
            max_tokens=15,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"num_beams": 3, "early_stopping": True},
        )
    )
    text = "".join(chunk.choices[0].text for chunk in chunks if chunk.choices)
    assert TOKENIZER.encode(text) == beam_tokens(model, "a", 15, num_beams=3, early_stopping=True)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 15


def test_a_stop_string_cuts_the_best_beam_just_before_it(server, model):
    whole = TOKENIZER.decode(beam_tokens(model, "ROMEO:", 30))
    stop = whole[10:12]
    result = server.client().completions.create(
        model="tiny", prompt="ROMEO:", max_tokens=30, stop=stop, extra_body=BEAMS
    )
    assert result.choices[0].text == whole[: whole.index(stop)]
    assert (
        result.choices[0].text
        == generate_text(model, TOKENIZER, ["ROMEO:"], beam_config(30, stop=(stop,)))[0]
    )
    assert result.choices[0].finish_reason == "stop"
    # the tokens up to the one that completed the stop string, as the batch counts them
    assert result.usage.completion_tokens == whole.index(stop) + len(stop)


def test_chat_takes_beam_search_too():
    with Server(tiny_model(), INSTRUCT_INFO, name="instruct") as server:
        messages = [{"role": "user", "content": "Name a colour."}]
        answer = server.client().chat.completions.create(
            model="instruct", messages=messages, max_tokens=12, extra_body={"num_beams": 3}
        )
        prompt = instruction_prompt(INSTRUCT_INFO["config"], "Name a colour.", "")
        config = response_config(beam_config(12, num_beams=3, length_penalty=1.0))
        expected = generate_text(server.model, TOKENIZER, [prompt], config)[0]
        assert answer.choices[0].message.content == expected
        response = httpx.post(
            f"{server.url}/v1/chat/completions",
            json={"model": "instruct", "messages": messages, "num_beams": 2, "logprobs": True},
        )
        assert response.status_code == 400 and response.json()["error"]["param"] == "logprobs"


@pytest.mark.parametrize(
    "options, param",
    [
        ({"num_beams": 0}, "num_beams"),
        ({"num_beams": 5}, "num_beams"),  # more beams than the batch's 4 rows
        ({"num_beams": "four"}, "num_beams"),
        ({"num_beams": 2, "temperature": 0.7}, "temperature"),
        ({"num_beams": 2, "top_p": 0.9}, "top_p"),
        ({"num_beams": 2, "top_k": 5}, "top_k"),
        ({"num_beams": 2, "min_p": 0.1}, "min_p"),
        ({"num_beams": 2, "logprobs": 2}, "logprobs"),
        ({"num_beams": 2, "n": 3}, "n"),
        ({"length_penalty": 2.0}, "length_penalty"),  # beam options without beams
        ({"early_stopping": True}, "early_stopping"),
        ({"num_beams": 2, "length_penalty": "fast"}, "length_penalty"),
        ({"num_beams": 2, "prompt": "a" * 200, "max_tokens": 60}, "max_tokens"),
    ],
)
def test_bad_beam_options_are_400_with_an_openai_error(server, options, param):
    response = httpx.post(
        f"{server.url}/v1/completions", json={"model": "tiny", "prompt": "a", **options}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert error["message"] and "Traceback" not in response.text


def test_a_beam_search_runs_beside_the_batch_and_both_get_their_tokens(model):
    """Two greedy requests decode while a beam search runs: the batch steps between the search's
    steps, and every request gets the tokens it gets alone."""
    with Server(model, max_batch=4) as server:
        scheduler = server.scheduler
        during_search = []
        step = scheduler.decoder.step

        def batch_step(token):
            during_search.append(scheduler.beam_running > 0)
            time.sleep(0.005)  # the greedy requests are still running when the search starts
            return step(token)

        scheduler.decoder.step = batch_step
        client = server.client()
        asks = [("To be, or not", 60, {}), ("ROMEO:", 40, BEAMS), ("a", 50, {})]
        results = [None] * len(asks)

        def ask(i):
            prompt, max_tokens, extra = asks[i]
            results[i] = client.completions.create(
                model="tiny", prompt=prompt, max_tokens=max_tokens, temperature=0, extra_body=extra
            )

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(asks))]
        for thread in threads:
            thread.start()
            time.sleep(0.05)
        for thread in threads:
            thread.join(60)
    for (prompt, max_tokens, extra), result in zip(asks, results):
        config = (
            beam_config(max_tokens)
            if extra
            else GenerationConfig(max_new_tokens=max_tokens, strategy="greedy")
        )
        assert (
            TOKENIZER.encode(result.choices[0].text)
            == generate(model, [TOKENIZER.encode(prompt)], config)[0]
        )
    assert any(during_search) and not all(during_search)


def test_a_client_that_leaves_abandons_its_beam_search(model):
    with Server(model, max_batch=4) as server:
        steps = slow_down_beams(server, 0.02)  # 200 steps would take 4 s
        body = {"model": "tiny", "prompt": "a", "max_tokens": 200, **BEAMS}
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{server.url}/v1/completions", json=body, timeout=0.3)
        server.wait_for("gptlab_running_sequences", 0, timeout=2)
        assert server.metric('gptlab_sequences_finished_total{reason="cancelled"}') == 1
        abandoned_at = len(steps)
        assert abandoned_at < 100
        done = server.client().completions.create(model="tiny", prompt="a", max_tokens=3)
        assert done.usage.completion_tokens == 3 and len(steps) == abandoned_at


def test_beam_requests_count_in_the_queue_bound(model):
    with Server(model, max_batch=2, max_queue=2) as server:
        slow_down_beams(server, 0.02)
        url = f"{server.url}/v1/completions"
        body = {"model": "tiny", "prompt": "a", "max_tokens": 200, "num_beams": 2, "stream": True}
        with httpx.stream("POST", url, json=body):  # searches
            server.wait_for("gptlab_running_sequences", 1)
            with httpx.stream("POST", url, json={**body, "n": 2}):  # waits, as 2 sequences
                server.wait_for("gptlab_queue_depth", 2)
                response = httpx.post(url, json=body)
                assert response.status_code == 429
                assert response.json()["error"]["code"] == "queue_full"
