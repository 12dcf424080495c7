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


class CheckpointModel(mlflow.pyfunc.PythonModel):
    """predict(prompts) -> completions, sampled with the checkpoint's defaults (greedy unless
    `params` say otherwise: max_new_tokens, temperature, top_k, top_p, seed)."""

    def load_context(self, context) -> None:
        from model.checkpoint import load_model, load_tokenizer

        path = context.artifacts[CHECKPOINT_ARTIFACT]
        self.model, _ = load_model(path)
        self.tokenizer = load_tokenizer(path)

    def predict(self, context, model_input, params=None):
        from model.generate import generate_text

        prompts = _prompts(model_input)
        sampling = SamplingParams(**{"max_new_tokens": 32, "temperature": 0.0, **(params or {})})
        return [generate_text(self.model, self.tokenizer, p, sampling) for p in prompts]


def _prompts(model_input) -> list[str]:
    if isinstance(model_input, str):
        return [model_input]
    if hasattr(model_input, "iloc"):  # a pandas DataFrame: its first column
        return [str(v) for v in model_input.iloc[:, 0].tolist()]
    return [str(v) for v in model_input]
