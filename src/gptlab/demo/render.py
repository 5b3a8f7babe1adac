"""The explorer's results as HTML: the next-token bar chart and the text coloured by probability.

Plain functions from data to an HTML string, so they test without a browser; the page puts
the string into a `gr.HTML` with `CHART_CSS` / `COLOUR_CSS`. Every piece of model text is
escaped: a token is data, never markup.
"""

from __future__ import annotations

import html
import math

from gptlab.demo.explorer import NextTokenTable, visible_token

# The colour scale of token probabilities is logarithmic: a token the model gave 1% is as far
# from one it gave 10% as that one is from a certainty. At 10 ** LOG_FLOOR and below, all red.
LOG_FLOOR = -3
PROMPT_TAIL_CHARS = 300  # how much of the prompt the coloured view shows before the new text

# Gradio runs a component's templates through a JS template string and Handlebars: these
# characters in model text must reach the page as entities, not as template syntax.
TEMPLATE_ENTITIES = {"$": "&#36;", "{": "&#123;", "}": "&#125;", "`": "&#96;"}

CHART_CSS = """
.ntx { font-size: 14px; }
.ntx-caption { margin: 0 0 6px; color: var(--body-text-color-subdued); }
.ntx-legend { display: flex; flex-wrap: wrap; gap: 4px 14px; align-items: center;
  margin-bottom: 8px; font-size: 12px; color: var(--body-text-color-subdued); }
.ntx-swatch { display: inline-block; width: 14px; height: 8px; border-radius: 2px;
  margin-right: 4px; vertical-align: middle; }
.ntx-tempered { background: var(--color-accent-soft, #fde8d7); border: 1px solid var(--color-accent, #f97316); }
.ntx-final { background: var(--color-accent, #f97316); }
.ntx-row { display: grid; grid-template-columns: 2.2em 7em 1fr 4.6em 9.5em; align-items: center;
  gap: 8px; width: 100%; margin: 0; padding: 3px 6px; border: 0; border-radius: 6px;
  background: none; box-shadow: none; color: inherit; font: inherit; text-align: left;
  cursor: pointer; }
.ntx-row:hover { background: var(--background-fill-secondary, #f4f4f5); }
.ntx-rank { color: var(--body-text-color-subdued); font-size: 12px; text-align: right; }
.ntx-token { font-family: var(--font-mono, monospace); white-space: pre; overflow: hidden;
  text-overflow: ellipsis; padding: 1px 6px; border-radius: 4px;
  background: var(--background-fill-secondary, #f4f4f5); }
.ntx-bars { display: flex; flex-direction: column; gap: 2px; }
.ntx-bar { display: block; height: 8px; border-radius: 2px; }
.ntx-percent { font-variant-numeric: tabular-nums; text-align: right; }
.ntx-note { font-size: 12px; color: var(--body-text-color-subdued); }
.ntx-removed .ntx-token { text-decoration: line-through; opacity: 0.55; }
.ntx-removed .ntx-percent { opacity: 0.55; }
"""

COLOUR_CSS = """
.tokp { font-family: var(--font-mono, monospace); font-size: 14px; line-height: 1.9;
  white-space: pre-wrap; word-break: break-word; }
.tokp-prompt { color: var(--body-text-color-subdued); }
.tokp-token { border-radius: 3px; padding: 1px 0; color: #111; }
.tokp-legend { display: flex; align-items: center; gap: 8px; margin-top: 10px;
  font-family: var(--font); font-size: 12px; color: var(--body-text-color-subdued); }
.tokp-scale { display: flex; flex-direction: column; width: 220px; }
.tokp-gradient { height: 10px; border-radius: 2px; }
.tokp-ticks { display: flex; justify-content: space-between; }
.tokp-empty { color: var(--body-text-color-subdued); font-family: var(--font); }
"""

# Listens on the chart's root, so rows that re-render keep working: a click on a row sends
# its token id to the server as the `token` of a "click" event.
CHART_CLICK_JS = """
element.addEventListener('click', (event) => {
  const row = event.target.closest('[data-token]');
  if (row) trigger('click', {token: Number(row.dataset.token)});
});
"""


def escape(text: str) -> str:
    """`text` safe inside the page: HTML-escaped, and no template syntax left."""
    escaped = html.escape(text, quote=True)
    return "".join(TEMPLATE_ENTITIES.get(c, c) for c in escaped)


def percent(p: float) -> str:
    """A probability as a short percentage: 42%, 3.1%, 0.1%, 0.04%, <0.01%."""
    if p == 0:
        return "0%"
    value = 100 * p
    if value >= 10:
        return f"{value:.0f}%"
    if value >= 0.995:
        return f"{value:.1f}%"
    if value >= 0.01:
        return f"{value:.2g}%"
    return "<0.01%"


def probability_colour(p: float) -> str:
    """A light background colour for probability `p`: red when unlikely, through yellow, to
    green when the model was sure (on a log scale)."""
    position = 0.0 if p <= 0 else min(1.0, max(0.0, 1 - math.log10(p) / LOG_FLOOR))
    return f"hsl({120 * position:.0f}, 80%, 78%)"


def next_token_chart(table: NextTokenTable, text: str, temperature: float) -> str:
    """The explorer's bar chart: each candidate's probability before and after the filters."""
    tail = text[-40:]
    where = (
        f"“{'…' if len(text) > len(tail) else ''}{escape(visible_token(tail))}”"
        if text
        else "the start"
    )
    caption = (
        f"Next token after {where} ({table.context_tokens} tokens read). "
        f"Sampling may draw <b>{table.kept:,}</b> of the {table.vocab_size:,} tokens"
        + (": temperature 0 is greedy." if table.greedy else ".")
    )
    legend = (
        f'<span><span class="ntx-swatch ntx-tempered"></span>at temperature {temperature:g}, '
        "before filters</span>"
        '<span><span class="ntx-swatch ntx-final"></span>what sampling draws from '
        "(after top-k, top-p; renormalised)</span><span>click a token to append it</span>"
    )
    scale = max((max(c.tempered_probability, c.probability) for c in table.choices), default=1)
    rows = []
    for rank, choice in enumerate(table.choices, start=1):
        removed = choice.removed_by is not None
        note = f"removed by {choice.removed_by}" if removed else ""
        title = (
            f"token {choice.token_id}: model {percent(choice.model_probability)}, "
            f"at temperature {percent(choice.tempered_probability)}, "
            f"sampled with {percent(choice.probability)}"
        )
        rows.append(
            f'<button type="button" class="ntx-row{" ntx-removed" if removed else ""}" '
            f'data-token="{choice.token_id}" title="{escape(title)}">'
            f'<span class="ntx-rank">{rank}</span>'
            f'<span class="ntx-token">{escape(visible_token(choice.text))}</span>'
            '<span class="ntx-bars">'
            f'<span class="ntx-bar ntx-tempered" style="width:{_width(choice.tempered_probability, scale)}"></span>'
            f'<span class="ntx-bar ntx-final" style="width:{_width(choice.probability, scale)}"></span>'
            "</span>"
            f'<span class="ntx-percent">{percent(choice.probability)}</span>'
            f'<span class="ntx-note">{note}</span></button>'
        )
    return (
        f'<div class="ntx"><p class="ntx-caption">{caption}</p>'
        f'<div class="ntx-legend">{legend}</div>{"".join(rows)}</div>'
    )


def _width(p: float, scale: float) -> str:
    return f"{100 * p / scale:.1f}%" if scale > 0 else "0%"


def coloured_text(prompt: str, tokens: list[tuple[str, float]]) -> str:
    """The end of the prompt in grey, then each new token on a background coloured by the
    probability the model gave it, with a legend."""
    if not tokens:
        return '<div class="tokp"><span class="tokp-empty">Generate some text to see how likely the model found each token.</span></div>'
    tail = prompt[-PROMPT_TAIL_CHARS:]
    spans = [
        f'<span class="tokp-prompt">{"…" if len(prompt) > len(tail) else ""}{escape(tail)}</span>'
    ]
    for text, p in tokens:
        title = f"{visible_token(text)}  {percent(p)}"
        spans.append(
            f'<span class="tokp-token" style="background:{probability_colour(p)}" '
            f'title="{escape(title)}">{escape(text)}</span>'
        )
    decades = range(LOG_FLOOR, 1)  # one tick and one colour stop a power of ten
    stops = ", ".join(
        f"{probability_colour(10.0**e)} {100 * (e - LOG_FLOOR) / -LOG_FLOOR:.0f}%" for e in decades
    )
    ticks = "".join(f"<span>{percent(10.0**e)}</span>" for e in decades)
    legend = (
        '<div class="tokp-legend"><span>Probability the model gave each new token</span>'
        f'<span class="tokp-scale"><span class="tokp-gradient" style="background:linear-gradient(to right, {stops})"></span>'
        f'<span class="tokp-ticks">{ticks}</span></span></div>'
    )
    return f'<div class="tokp">{"".join(spans)}</div>{legend}'


def message(text: str) -> str:
    """A short note in place of a chart (why there is nothing to show)."""
    return f'<div class="ntx"><p class="ntx-caption">{escape(text)}</p></div>'
