"""Where each stage's files live under the storage root (one place, so no stage guesses).

A command given explicit paths (`ownlm tokenize --input DIR --output DIR`) overrides single
locations with `Layout.with_paths`; everything else stays under the root.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    root: Path
    overrides: tuple[tuple[str, Path], ...] = ()

    def with_paths(self, **paths: str | Path | None) -> "Layout":
        """A layout with some locations moved (None leaves a location where it is)."""
        unknown = [k for k in paths if k not in LOCATIONS]
        if unknown:
            raise KeyError(f"unknown layout location(s): {', '.join(unknown)}")
        moved = dict(self.overrides)
        moved.update({k: Path(v).expanduser().resolve() for k, v in paths.items() if v is not None})
        return dataclasses.replace(self, overrides=tuple(sorted(moved.items())))

    def _at(self, name: str) -> Path:
        return dict(self.overrides).get(name) or self.root / LOCATIONS[name]

    @property
    def sample(self) -> Path:
        """The bundled sample corpus, built from this Python installation."""
        return self._at("sample")

    @property
    def curated(self) -> Path:
        """Curated Parquet shards, `rejects/`, `report.json`."""
        return self._at("curated")

    @property
    def tokenizer(self) -> Path:
        """`tokenizer.json`."""
        return self._at("tokenizer")

    @property
    def tokens(self) -> Path:
        """Packed token shards: `train/`, `val/`, `manifest.json` (and a copy of the tokenizer)."""
        return self._at("tokens")

    @property
    def train_runs(self) -> Path:
        """Ray Train's storage path: run folders with their checkpoints."""
        return self._at("train_runs")

    @property
    def model(self) -> Path:
        """The final checkpoint (loadable by `model.checkpoint.load_model`)."""
        return self._at("model")

    @property
    def eval(self) -> Path:
        """Evaluation results JSON and the generated sample."""
        return self._at("eval")

    @property
    def state(self) -> Path:
        """One JSON per finished stage: its fingerprint and outputs, for skipping reruns."""
        return self.root / "state"

    def expand(self, path: str) -> str:
        """Expand `{root}` and `{sample}` in a configured path."""
        return path.replace("{root}", str(self.root)).replace("{sample}", str(self.sample))


LOCATIONS = {"sample": "sample", "curated": "curated", "tokenizer": "tokenizer", "tokens": "tokens",
             "train_runs": "train", "model": "model", "eval": "eval"}
