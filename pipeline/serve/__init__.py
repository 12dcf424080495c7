"""`ownlm serve`: the model on Ray Serve behind an OpenAI-compatible HTTP API (docs/serving.md).

    protocol.py  the requests' shapes (OpenAI's), parsed and checked, and the error shape
    engine.py    batched generation, stop strings, logprobs and embeddings, on plain torch (no Ray)
    responses.py the engine's output in OpenAI's response and streaming shapes
    app.py       the Ray Serve application: a FastAPI ingress and the model deployment
    command.py   the `ownlm serve` command: start, block until Ctrl-C or SIGTERM, stop
"""
