"""Which model to train: a preset of `model.config.PRESETS` and field overrides."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from model.config import get_preset


class ModelSection(BaseModel):
    """`preset` names a model in `model.config.PRESETS`; any other key overrides a ModelConfig field."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)
    preset: str = "tiny"

    @property
    def overrides(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def build(self, vocab_size: int | None = None):
        """The resolved `model.config.ModelConfig` (vocab from the tokenizer when given)."""
        overrides = self.overrides
        if vocab_size is not None:
            overrides["vocab_size"] = vocab_size
        return get_preset(self.preset, **overrides)
