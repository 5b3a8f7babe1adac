"""The web demo: type a prompt, set the decoding, watch the text stream, and see why each token came.

Files, in reading order:

- `settings.py`: the demo's limits, and the page's control values turned into a checked
  `GenerationConfig` (a bad value is a message in the page, never a crash);
- `explorer.py`: what the model would say next, and how each filter reshapes it; the
  probability the model gave each token of a text;
- `inspect.py`: the Inspect tab's pictures, the logit lens and attention maps of the prompt;
- `render.py`: those results as HTML (the next-token bar chart, the coloured text);
- `models.py`: finding models on disk, loading them, keeping the loaded ones;
- `app.py`: the Gradio page, its event wiring, and `launch`.

Only `app.py` imports gradio, so the functions behind the controls test without it.
"""
