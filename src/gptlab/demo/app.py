"""The page of `gptlab demo`: its layout, what each control calls, and the server's settings.

    store = ModelStore(device="cpu")
    page = DemoApp(store, DemoLimits(), choices=["runs/tiny"], default="runs/tiny").build()
    serve(page, host="127.0.0.1", port=7860)

Each handler is a thin method: it reads the controls, calls the functions of `settings`,
`explorer` and `render`, and turns a `GptlabError` into a `gr.Error`, which the page shows
as a message. Every call that runs the model shares one concurrency group, so at most
`limits.concurrency` of them run at once and the rest wait in the queue, whichever button
started them.

A classifier (from `gptlab finetune classify`) is served by the Classify tab; the generation
controls say they need a language model, and the Classify tab that it needs a classifier. An
instruction run (from `gptlab finetune instruct`) is a language model that the Instruct tab
also asks in the prompt format it was trained with; another model, the tab says, needs one.
"""

from __future__ import annotations

import contextlib
import itertools
import os

# Gradio reads these as it works: no telemetry, nothing fetched from the internet.
OFFLINE_ENVIRONMENT = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": "1"}
os.environ.update(OFFLINE_ENVIRONMENT)

import gradio as gr  # noqa: E402  (after the environment above)

from gptlab.demo import render  # noqa: E402
from gptlab.demo.explorer import continuation_probabilities, next_token_table  # noqa: E402
from gptlab.demo.inspect import figure_image, inspection  # noqa: E402
from gptlab.demo.models import LoadedModel, ModelStore  # noqa: E402
from gptlab.demo.settings import (  # noqa: E402
    STRATEGY_CHOICES,
    DemoLimits,
    checked_instruction,
    checked_prompt,
    checked_text,
    checked_text_to_classify,
    decoding_config,
    usable_prompts,
    whole_number,
)
from gptlab.errors import ConfigError, GptlabError  # noqa: E402
from gptlab.generation import stream, stream_tokens  # noqa: E402
from gptlab.pretrained import is_classifier  # noqa: E402
from gptlab.tasks.classification import max_text_tokens, predict_texts  # noqa: E402
from gptlab.tasks.instruction import (  # noqa: E402
    instruction_prompt,
    is_instruction_run,
    response_config,
)

EXAMPLE_PROMPTS = [
    "ROMEO:\n",
    "First Citizen:\nBefore we proceed any further, hear me speak.\n",
    "To be, or not to be",
    "The meaning of life is",
    "Once upon a time, in a small village,",
]
MODEL_GROUP = "model"  # the concurrency group of every call that runs the model
CLASSIFY_TAB = "classify"  # the id of the Classify tab, which a loaded classifier selects
INSTRUCT_TAB = "instruct"  # the id of the Instruct tab, which a loaded instruction run selects
IS_A_CLASSIFIER = (
    "this model is a classifier: use the Classify tab (generating text needs a language model)"
)
MAX_CHART_ROWS = 30
PAGE_CSS = """
.gradio-container { max-width: 1320px !important; margin: 0 auto; }
#title h1 { margin-bottom: 0; }
#status { padding-top: 6px; }
"""

DEFAULTS = dict(
    strategy="sample", temperature=0.8, top_k=40, top_p=0.9, repetition_penalty=1.0, seed=1337
)


@contextlib.contextmanager
def shown_in_page():
    """Turn an error the user can fix into a message in the page (the server goes on serving)."""
    try:
        yield
    except GptlabError as error:
        raise gr.Error(str(error), title="Cannot do that") from None


class DemoApp:
    """The demo's handlers and the page that calls them.

    choices: the models the picker offers; default: the one selected at start.
    allow_any_model: whether the picker takes any typed spec (a path, a GPT-2 name) or only
    `choices`: on a server others can reach, a typed path would read files of the host.
    """

    def __init__(
        self,
        store: ModelStore,
        limits: DemoLimits,
        choices: list[str],
        default: str | None,
        allow_any_model: bool = True,
    ):
        self.store = store
        self.limits = limits
        self.choices = choices
        self.default = default
        self.allow_any_model = allow_any_model

    # ---- handlers: one per control ----

    def model(self, spec):
        """The loaded model named by the picker (loading it if needed)."""
        if not self.allow_any_model and spec not in self.choices:
            raise ConfigError(
                f"{spec!r} is not one of the models this server offers: {', '.join(self.choices)}"
            )
        return self.store.get(spec)

    def language_model(self, spec) -> LoadedModel:
        """The loaded model named by the picker, which must be a language model (to generate)."""
        loaded = self.model(spec)
        if is_classifier(loaded.model):
            raise ConfigError(IS_A_CLASSIFIER)
        return loaded

    def classifier(self, spec) -> LoadedModel:
        """The loaded model named by the picker, which must be a classifier (to classify)."""
        loaded = self.model(spec)
        if not is_classifier(loaded.model):
            raise ConfigError(needs_a_classifier(loaded.spec))
        return loaded

    def instruction_run(self, spec) -> LoadedModel:
        """The loaded model named by the picker, which must be an instruction run (to answer)."""
        loaded = self.model(spec)
        if not is_instruction_run(loaded.info):
            raise ConfigError(needs_an_instruction_run(loaded))
        return loaded

    def load(self, spec, progress=gr.Progress(track_tqdm=True)):  # noqa: B008 (gradio's way)
        """Model picker: load the model; its description, or why it failed, in the status line."""
        if not spec:
            return (
                "No model yet: train one with `gptlab train --preset shakespeare-char-cpu "
                "--out runs/shakespeare-cpu`, or type a run directory above.",
                gr.Dataset(samples=[[p] for p in EXAMPLE_PROMPTS]),
            )
        progress(0.1, desc=f"loading {spec}")
        try:
            loaded = self.model(spec)
        except GptlabError as error:
            gr.Warning(f"Could not load {spec}: {error}")
            return f"**Could not load {spec}**: {error}", gr.skip()
        prompts = usable_prompts(loaded.tokenizer, EXAMPLE_PROMPTS)
        return loaded.description, gr.Dataset(samples=[[p] for p in prompts])

    def generate(self, spec, prompt, *controls):
        """Generate button: the continuation of the prompt, streamed as it comes, with the ids
        of its tokens (kept in the page's state, so colouring needs no re-tokenizing)."""
        with shown_in_page():
            loaded = self.language_model(spec)
            config = self._config(*controls)
            prompt = checked_prompt(prompt, self.limits, loaded.tokenizer)
            yield from streamed_text_and_ids(loaded, prompt, config)

    def compare(self, spec, prompt, *controls):
        """Compare button: the prompt decoded with settings A and B, streamed side by side.

        controls: strategy, temperature, top-k, top-p of A, the same of B, then the shared
        repetition penalty, max new tokens, seed and beams.
        """
        with shown_in_page():
            loaded = self.language_model(spec)
            shared = controls[8:]
            configs = [self._config(*controls[:4], *shared), self._config(*controls[4:8], *shared)]
            prompt = checked_prompt(prompt, self.limits, loaded.tokenizer)
            streams = [stream(loaded.model, loaded.tokenizer, prompt, c) for c in configs]
            texts = ["", ""]
            yield tuple(texts)
            for pieces in itertools.zip_longest(*streams, fillvalue=""):
                texts = [text + piece for text, piece in zip(texts, pieces)]
                yield tuple(texts)

    def colour(self, spec, prompt, output, ids=None):
        """After a generation: the new tokens coloured by probability, and the whole text handed
        to the explorer. `ids`, the generation's own token ids, are coloured as they are when
        they still spell the output (otherwise the output is tokenized again)."""
        with shown_in_page():
            loaded = self.language_model(spec)
            prompt = checked_prompt(prompt, self.limits, loaded.tokenizer)
            output = checked_text(output, "the output", self.limits.max_text_chars)
            tokens = continuation_probabilities(loaded.model, loaded.tokenizer, prompt, output, ids)
        return render.coloured_text(prompt, tokens), prompt + output

    def explore(self, spec, text, temperature, top_k, top_p, repetition_penalty, rows):
        """Explorer: the chart of the next token of `text`; a problem shows in its place."""
        try:
            loaded = self.language_model(spec)
            text = checked_text(text, "the text", self.limits.max_text_chars)
            config = decoding_config(
                self.limits,
                strategy="sample",
                temperature=temperature,
                top_k=top_k,
                top_p=top_p,
                repetition_penalty=repetition_penalty,
                max_new_tokens=1,
                seed=None,
            )
            rows = whole_number(rows, "tokens shown", 1, MAX_CHART_ROWS)
            table = next_token_table(loaded.model, loaded.tokenizer, text, config, rows)
        except GptlabError as error:
            return render.message(str(error))
        return render.next_token_chart(table, text, config.temperature)

    def append_token(self, spec, text, event: gr.EventData):
        """A click on the explorer's chart: the clicked token added to the text."""
        with shown_in_page():
            loaded = self.language_model(spec)
            clicked = event._data if isinstance(event._data, dict) else {}
            token_id = clicked.get("token")
            if not isinstance(token_id, int) or not 0 <= token_id < loaded.tokenizer.vocab_size:
                raise ConfigError(f"not a token of this model: {token_id!r}")
            text = checked_text(text, "the text", self.limits.max_text_chars)
            return text + loaded.tokenizer.decode([token_id])

    def inspect(self, spec, prompt, layer):
        """Inspect button: the logit lens and the attention maps of the prompt, as images."""
        with shown_in_page():
            loaded = self.language_model(spec)
            prompt = checked_text(prompt, "the prompt", self.limits.max_prompt_chars)
            layer = None if layer in (None, "") else whole_number(layer, "the layer", 0)
            lens, maps = inspection(loaded.model, loaded.tokenizer, prompt, layer)
        return figure_image(lens), figure_image(maps)

    def instruct_help(self, spec):
        """After a load: the Instruct tab's line about the model, and an instruction run's tab
        selected (another model leaves the tabs as they are)."""
        try:
            loaded = self.model(spec)
        except GptlabError:
            return gr.skip(), gr.skip()  # the status line already says why
        if not is_instruction_run(loaded.info):
            return needs_an_instruction_run(loaded), gr.skip()
        help_line = (
            "Type an instruction, and an input when it is about one: the run is asked in the "
            "prompt format it was trained with, and its response ends at its end-of-text or "
            "at the next `###`. Decoding is set on the left (`gptlab sample --instruction` "
            "decodes greedily unless told otherwise)."
        )
        return help_line, gr.Tabs(selected=INSTRUCT_TAB)

    def instruct(self, spec, instruction, input, *controls):
        """Answer button: an instruction run's response to the instruction (and input), streamed
        as it comes: what `gptlab sample RUN --instruction ... --input ...` prints."""
        with shown_in_page():
            loaded = self.instruction_run(spec)
            config = response_config(self._config(*controls))
            instruction, input = checked_instruction(instruction, input, self.limits)
            prompt = instruction_prompt(loaded.info.get("config", {}), instruction, input)
            yield from streamed_text(loaded, prompt, config)

    def classify_help(self, spec):
        """After a load: the Classify tab's line about the model, and a classifier's tab
        selected (a language model leaves the tabs as they are)."""
        try:
            loaded = self.model(spec)
        except GptlabError:
            return gr.skip(), gr.skip()  # the status line already says why
        if not is_classifier(loaded.model):
            return needs_a_classifier(loaded.spec), gr.skip()
        classes = ", ".join(f"**{label}**" for label in loaded.model.head.labels)
        length = max_text_tokens(loaded.model, loaded.info)
        help_line = (
            f"The classes: {classes}. The classifier reads up to {length} tokens of a text, "
            "as in training."
        )
        return help_line, gr.Tabs(selected=CLASSIFY_TAB)

    def classify(self, spec, text):
        """Classify button: the probability of each class for the text, and a note when the
        text was cut to the tokens the classifier reads."""
        with shown_in_page():
            loaded = self.classifier(spec)
            text = checked_text_to_classify(text, self.limits)
            length = max_text_tokens(loaded.model, loaded.info)
            probabilities, truncated = predict_texts(
                loaded.model, loaded.tokenizer, [text], length, 1, self.store.device
            )
        labels = loaded.model.head.labels
        note = (
            f"The text is longer than the {length} tokens the classifier reads: only its first "
            f"{length} were classified, as in training."
            if truncated
            else ""
        )
        return dict(zip(labels, probabilities[0].tolist(), strict=True)), note

    def _config(
        self, strategy, temperature, top_k, top_p, repetition_penalty, max_new_tokens, seed, beams
    ):
        return decoding_config(
            self.limits,
            strategy=strategy,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            repetition_penalty=repetition_penalty,
            max_new_tokens=max_new_tokens,
            seed=seed,
            num_beams=beams,
        )

    # ---- the page ----

    def build(self) -> gr.Blocks:
        """The page, with its queue set to the limits."""
        limits = self.limits
        with gr.Blocks(title="gptlab demo", analytics_enabled=False) as page:
            gr.Markdown(
                "# gptlab demo\nType a prompt, choose how to decode, and watch the text "
                "stream. Below the output, see how likely each new token was, and what the "
                "model would say next. With a classifier, the Classify tab gives the class "
                "of a text; with an instruction run, the Instruct tab answers an instruction.",
                elem_id="title",
            )
            with gr.Row(equal_height=True):
                model = gr.Dropdown(
                    self.choices,
                    value=self.default,
                    label="Model",
                    info="a run directory, a GPT-2 name or a Hugging Face folder",
                    allow_custom_value=self.allow_any_model,
                    scale=2,
                )
                status = gr.Markdown("Loading the model…", elem_id="status")
            with gr.Row():
                with gr.Column(scale=1, min_width=280):
                    gr.Markdown("### Decoding")
                    strategy, temperature, top_k, top_p = self._strategy_controls(DEFAULTS)
                    repetition_penalty = gr.Slider(
                        0.5,
                        2.0,
                        DEFAULTS["repetition_penalty"],
                        step=0.05,
                        label="Repetition penalty",
                        info=">1 makes tokens already in the text less likely",
                    )
                    max_new_tokens = gr.Slider(
                        1,
                        limits.max_new_tokens_cap,
                        min(200, limits.max_new_tokens_cap),
                        step=1,
                        label="Max new tokens",
                    )
                    seed = gr.Number(
                        DEFAULTS["seed"],
                        precision=0,
                        label="Seed",
                        elem_id="seed",
                        info="the same seed gives the same sample; empty for a fresh one",
                    )
                    beams = gr.Slider(
                        2,
                        8,
                        4,
                        step=1,
                        label="Beams",
                        visible=False,
                        info="continuations beam search keeps",
                    )
                with gr.Column(scale=3):
                    prompt = gr.Textbox(
                        EXAMPLE_PROMPTS[0],
                        label="Prompt",
                        lines=3,
                        max_lines=8,
                        max_length=limits.max_prompt_chars,
                        elem_id="prompt",
                    )
                    examples = gr.Examples([[p] for p in EXAMPLE_PROMPTS], [prompt])
                    with gr.Tabs() as tabs:
                        with gr.Tab("Generate"):
                            with gr.Row():
                                generate = gr.Button(
                                    "Generate", variant="primary", elem_id="generate"
                                )
                                stop = gr.Button("Stop", variant="stop", elem_id="stop")
                            output = gr.Textbox(
                                label="Output",
                                lines=5,
                                max_lines=12,
                                interactive=False,
                                autoscroll=True,
                                elem_id="output",
                            )
                            coloured = gr.HTML(
                                render.coloured_text("", []),
                                css_template=render.COLOUR_CSS,
                                js_on_load=None,
                                elem_id="coloured",
                                padding=True,
                            )
                            gr.Markdown(
                                "### What comes next?\nThe most likely next tokens of the text "
                                "below, and what temperature, top-k and top-p (on the left) "
                                "make of them."
                            )
                            with gr.Row(equal_height=True):
                                text = gr.Textbox(
                                    EXAMPLE_PROMPTS[0],
                                    label="Text",
                                    lines=2,
                                    max_lines=4,
                                    scale=4,
                                    elem_id="explorer-text",
                                )
                                rows = gr.Slider(
                                    5, MAX_CHART_ROWS, 12, step=1, label="Tokens shown", scale=1
                                )
                            chart = gr.HTML(
                                css_template=render.CHART_CSS,
                                js_on_load=render.CHART_CLICK_JS,
                                elem_id="explorer",
                                padding=True,
                            )
                        with gr.Tab("Compare"):
                            gr.Markdown(
                                "The prompt decoded two ways at once. Both sides share the "
                                "repetition penalty, max new tokens, seed and beams on the left."
                            )
                            with gr.Row():
                                with gr.Column():
                                    gr.Markdown("**A**")
                                    side_a = self._strategy_controls(
                                        DEFAULTS | {"strategy": "greedy"}, side="a-"
                                    )
                                with gr.Column():
                                    gr.Markdown("**B**")
                                    side_b = self._strategy_controls(
                                        DEFAULTS | {"temperature": 1.0, "top_k": 0, "top_p": 1.0},
                                        side="b-",
                                    )
                            with gr.Row():
                                compare = gr.Button("Compare", variant="primary", elem_id="compare")
                                stop_compare = gr.Button("Stop", variant="stop")
                            with gr.Row():
                                output_a = gr.Textbox(
                                    label="A",
                                    lines=8,
                                    max_lines=16,
                                    interactive=False,
                                    elem_id="output-a",
                                )
                                output_b = gr.Textbox(
                                    label="B",
                                    lines=8,
                                    max_lines=16,
                                    interactive=False,
                                    elem_id="output-b",
                                )
                        with gr.Tab("Inspect"):
                            gr.Markdown(
                                "Inside the model, for the prompt above: the **logit lens** "
                                "(the top next token read from the residual stream after each "
                                "layer) and each head's **attention** (row: the token "
                                "attending; column: the token attended to). `gptlab inspect` "
                                "has more: head scores, attribution, patching, ablation."
                            )
                            with gr.Row(equal_height=True):
                                inspect_layer = gr.Number(
                                    None,
                                    precision=0,
                                    label="Layer of the attention maps",
                                    info="empty: every layer of a small model, the last of a "
                                    "large one",
                                    elem_id="inspect-layer",
                                )
                                inspect = gr.Button("Inspect", variant="primary", elem_id="inspect")
                            lens_image = gr.Image(
                                label="Logit lens", type="pil", elem_id="logit-lens"
                            )
                            maps_image = gr.Image(
                                label="Attention", type="pil", elem_id="attention-maps"
                            )
                        with gr.Tab("Instruct", id=INSTRUCT_TAB):
                            instruct_help = gr.Markdown(elem_id="instruct-help")
                            instruction = gr.Textbox(
                                label="Instruction",
                                lines=2,
                                max_lines=6,
                                max_length=limits.max_prompt_chars,
                                elem_id="instruction",
                            )
                            instruction_input = gr.Textbox(
                                label="Input (optional)",
                                info="what the instruction is about, if anything",
                                lines=2,
                                max_lines=6,
                                max_length=limits.max_prompt_chars,
                                elem_id="instruction-input",
                            )
                            with gr.Row():
                                answer = gr.Button("Answer", variant="primary", elem_id="answer")
                                stop_answer = gr.Button("Stop", variant="stop")
                            response = gr.Textbox(
                                label="Response",
                                lines=5,
                                max_lines=12,
                                interactive=False,
                                autoscroll=True,
                                elem_id="response",
                            )
                        with gr.Tab("Classify", id=CLASSIFY_TAB):
                            classify_help = gr.Markdown(elem_id="classify-help")
                            classify_text = gr.Textbox(
                                label="Text to classify",
                                lines=3,
                                max_lines=8,
                                max_length=limits.max_prompt_chars,
                                elem_id="classify-text",
                            )
                            classify = gr.Button("Classify", variant="primary", elem_id="classify")
                            classes = gr.Label(label="Class", elem_id="classes")
                            classify_note = gr.Markdown(elem_id="classify-note")

            shared = [repetition_penalty, max_new_tokens, seed, beams]
            decoding = [strategy, temperature, top_k, top_p, *shared]  # the left column
            explorer_inputs = [model, text, temperature, top_k, top_p, repetition_penalty, rows]
            in_group = dict(concurrency_id=MODEL_GROUP, concurrency_limit=limits.concurrency)
            quietly = dict(in_group, show_progress="hidden", trigger_mode="always_last")

            loading = page.load(self.load, [model], [status, examples.dataset], **in_group)
            for event in (
                loading,
                model.change(self.load, [model], [status, examples.dataset], **in_group),
            ):
                event.then(self.explore, explorer_inputs, [chart], **quietly)
                event.then(
                    self.instruct_help,
                    [model],
                    [instruct_help, tabs],
                    api_visibility="private",
                    **quietly,
                )
                event.then(
                    self.classify_help,
                    [model],
                    [classify_help, tabs],
                    api_visibility="private",
                    **quietly,
                )
            strategy.change(show_beams, [strategy], [beams], queue=False)

            generated_ids = gr.State([])  # the ids of the output's tokens, for colouring
            generating = generate.click(
                self.generate,
                [model, prompt, *decoding],
                [output, generated_ids],
                api_name="generate",
                **in_group,
            )
            after = dict(
                inputs=[model, prompt, output, generated_ids], outputs=[coloured, text], **in_group
            )
            generating.success(self.colour, api_visibility="private", **after)
            stop.click(None, cancels=[generating]).then(
                self.colour, api_visibility="private", **after
            )

            for control in (text, temperature, top_k, top_p, repetition_penalty, rows):
                control.change(
                    self.explore, explorer_inputs, [chart], api_visibility="private", **quietly
                )
            chart.click(
                self.append_token, [model, text], [text], api_visibility="private", **in_group
            )

            comparing = compare.click(
                self.compare,
                [model, prompt, *side_a, *side_b, *shared],
                [output_a, output_b],
                api_name="compare",
                **in_group,
            )
            stop_compare.click(None, cancels=[comparing])

            answering = answer.click(
                self.instruct,
                [model, instruction, instruction_input, *decoding],
                [response],
                api_name="instruct",
                **in_group,
            )
            stop_answer.click(None, cancels=[answering])

            inspect.click(
                self.inspect,
                [model, prompt, inspect_layer],
                [lens_image, maps_image],
                api_name="inspect",
                **in_group,
            )

            classify.click(
                self.classify,
                [model, classify_text],
                [classes, classify_note],
                api_name="classify",
                **in_group,
            )
        page.queue(default_concurrency_limit=limits.concurrency, max_size=limits.queue_size)
        return page

    @staticmethod
    def _strategy_controls(defaults: dict, side: str = ""):
        """The strategy, temperature, top-k and top-p controls (the left column has one set,
        each side of Compare another, whose element ids start with `side`)."""
        return (
            gr.Radio(
                STRATEGY_CHOICES,
                value=defaults["strategy"],
                label="Strategy",
                elem_id=f"{side}strategy",
            ),
            gr.Slider(
                0.0,
                2.0,
                defaults["temperature"],
                step=0.05,
                label="Temperature",
                elem_id=f"{side}temperature",
                info="<1 sharper, >1 flatter, 0 greedy",
            ),
            gr.Slider(
                0,
                200,
                defaults["top_k"],
                step=1,
                label="Top-k",
                elem_id=f"{side}top-k",
                info="sample among the k most likely (0: off)",
            ),
            gr.Slider(
                0.05,
                1.0,
                defaults["top_p"],
                step=0.05,
                label="Top-p",
                elem_id=f"{side}top-p",
                info="the fewest tokens holding p of the probability (1: off)",
            ),
        )


def needs_a_classifier(spec: str) -> str:
    """What the Classify tab says of a language model: how to make a classifier of it."""
    return (
        f"{spec} is a language model: this tab needs a classifier. Fine-tune one with "
        f"`gptlab finetune classify {spec} --data sms-spam --out runs/spam`, then choose "
        "runs/spam above."
    )


def needs_an_instruction_run(loaded: LoadedModel) -> str:
    """What the Instruct tab says of another model: how to make an instruction run."""
    # A classifier cannot be the base of an instruction run: name a language model instead.
    base = "gpt2" if is_classifier(loaded.model) else loaded.spec
    return (
        f"{loaded.spec} is not an instruction run: this tab needs one. Fine-tune one with "
        f"`gptlab finetune instruct {base} --data instruction-data --out runs/instruct`, then "
        "choose runs/instruct above."
    )


def streamed_text(loaded: LoadedModel, prompt: str, config):
    """The text of a generation as it grows: empty first, then longer with each piece."""
    for text, _ in streamed_text_and_ids(loaded, prompt, config):
        yield text


def streamed_text_and_ids(loaded: LoadedModel, prompt: str, config):
    """(text, token ids) of a generation as it grows: empty first, then longer with each piece."""
    text, ids = "", []
    yield text, ids
    shown = True  # whether the page has the latest (text, ids)
    for new_ids, piece in stream_tokens(loaded.model, loaded.tokenizer, prompt, config):
        ids = ids + new_ids
        text += piece
        shown = bool(piece)
        if shown:
            yield text, ids
    if not shown:
        yield text, ids  # the last ids let out no text: colouring still needs them


def show_beams(strategy):
    """The beams slider matters only to beam search."""
    return gr.Slider(visible=strategy == "beam")


def serve(page: gr.Blocks, host: str, port: int, *, block: bool = True):
    """Start the server on host:port. block=False returns at once (tests close it with
    `page.close()`)."""
    return page.launch(
        server_name=host,
        server_port=port,
        share=False,
        prevent_thread_lock=not block,
        show_error=True,
        quiet=not block,
        ssr_mode=False,
        mcp_server=False,
        enable_monitoring=False,
        theme=gr.themes.Soft(primary_hue="indigo"),
        css=PAGE_CSS,
    )
