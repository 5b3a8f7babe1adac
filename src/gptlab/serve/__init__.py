"""Serving a model over HTTP, with OpenAI's API and continuous batching.

    gptlab serve runs/instruct --port 8000          # then any OpenAI client can ask it

Files, in reading order: `scheduler.py` (the thread that owns the model and decodes every
running request in one batch), `protocol.py` (request bodies and errors), `api.py` (requests
into work, events into responses), `metrics.py` (Prometheus text), `app.py` (the FastAPI routes)
and `server.py` (loading the model and running uvicorn). FastAPI and uvicorn are optional
dependencies (`pip install 'gptlab[serve]'`): import this package's modules only to serve.
"""
