"""Where each stage's files live under the storage root (one place, so no stage guesses)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def sample(self) -> Path:
        """The bundled sample corpus, built from this Python installation."""
        return self.root / "sample"

    @property
    def curated(self) -> Path:
        """Curated Parquet shards, `rejects/`, `report.json`."""
        return self.root / "curated"

    @property
    def tokenizer(self) -> Path:
        """`tokenizer.json`."""
        return self.root / "tokenizer"

    @property
    def tokens(self) -> Path:
        """Packed token shards: `train/`, `val/`, `manifest.json`."""
        return self.root / "tokens"

    @property
    def train_runs(self) -> Path:
        """Ray Train's storage path: run folders with their checkpoints."""
        return self.root / "train"

    @property
    def model(self) -> Path:
        """The final checkpoint (loadable by `model.checkpoint.load_model`)."""
        return self.root / "model"

    @property
    def eval(self) -> Path:
        """Evaluation results JSON and the generated sample."""
        return self.root / "eval"

    @property
    def state(self) -> Path:
        """One JSON per finished stage: its fingerprint and outputs, for skipping reruns."""
        return self.root / "state"

    def expand(self, path: str) -> str:
        """Expand `{root}` and `{sample}` in a configured path."""
        return path.replace("{root}", str(self.root)).replace("{sample}", str(self.sample))
