"""The checkpoint as an MLflow pyfunc model: what `mlflow.pyfunc.load_model("models:/NAME@champion")`
gives back, so that any MLflow tool can call a registered version without ownlm's command line.

The checkpoint folder is the model's artifact, as it is (safetensors, config, tokenizer): nothing is
pickled but this small class, and loading needs only torch and this package, no network.
"""
from __future__ import annotations

import mlflow.pyfunc

from model.sampling import SamplingParams

CHECKPOINT_ARTIFACT = "checkpoint"
"""The artifact key (and folder under the model's `artifacts/`) that holds the checkpoint."""


PARAMS = {"max_new_tokens": 32, "temperature": 0.0, "top_k": 0, "top_p": 1.0, "seed": 0}
"""Sampling settings a caller may pass to `predict(..., params=...)`, with their defaults (greedy).
`top_k` 0 and `top_p` 1.0 mean no cut (MLflow's params schema has no None)."""


class CheckpointModel(mlflow.pyfunc.PythonModel):
    """predict(prompts) -> completions, greedy unless `params` say otherwise (PARAMS)."""

    def load_context(self, context) -> None:
        from model.checkpoint import load_model, load_tokenizer

        path = context.artifacts[CHECKPOINT_ARTIFACT]
        self.model, _ = load_model(path)
        self.tokenizer = load_tokenizer(path)

    def predict(self, context, model_input, params=None):
        from model.generate import generate_text

        p = {**PARAMS, **(params or {})}
        sampling = SamplingParams(max_new_tokens=int(p["max_new_tokens"]), temperature=float(p["temperature"]),
                                  top_k=int(p["top_k"]) or None, top_p=float(p["top_p"]) if p["top_p"] < 1 else None,
                                  seed=int(p["seed"]))
        return [generate_text(self.model, self.tokenizer, prompt, sampling) for prompt in _prompts(model_input)]


def signature():
    """Prompts in, completions out, and the sampling params: what `predict` accepts."""
    from mlflow.models import infer_signature

    return infer_signature(model_input=["def "], model_output=["return x"], params=PARAMS)


def _prompts(model_input) -> list[str]:
    if isinstance(model_input, str):
        return [model_input]
    if hasattr(model_input, "iloc"):  # a pandas DataFrame: its first column
        return [str(v) for v in model_input.iloc[:, 0].tolist()]
    return [str(v) for v in model_input]
