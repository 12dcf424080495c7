"""`ownlm serve`: where the OpenAI-compatible server listens, how it scales and batches, and the
limits that keep one request from holding a replica."""
from __future__ import annotations

import re

from pydantic import Field, field_validator

from pipeline.config.base import Section


class ServeConfig(Section):
    host: str = "127.0.0.1"
    """Where the HTTP server listens. Loopback unless you mean to expose it (then set api_key)."""
    port: int = Field(default=8000, ge=1, le=65535)
    model_name: str | None = None
    """The name clients pass as `model`; None: the checkpoint folder's name (or the registered
    model's name for models:/NAME@ALIAS)."""
    api_key: str | None = None
    """With a key, every endpoint but /health needs `Authorization: Bearer KEY` (401 otherwise).
    The OWNLM_API_KEY environment variable sets it without writing it into a config file."""
    replicas: int = Field(default=1, ge=1)
    """Model replicas, each holding the model (ignored when autoscale is set)."""
    autoscale: str | None = None
    """MIN:MAX replicas, scaled by Serve on ongoing requests per replica (e.g. 1:4)."""
    cpus_per_replica: float = Field(default=1.0, gt=0)
    """Ray CPUs a model replica reserves; torch in the replica uses that many threads."""
    gpus_per_replica: float = Field(default=0.0, ge=0)
    compile: bool = True
    """Decode with the torch.compile'd step over a static KV cache (model/decode_compile.py); a
    replica compiles once per batch-size bucket (1, 2, 4, 8, ...), on the first batch of that
    size, then reuses it. False: eager decoding (`ownlm serve --no-compile`)."""
    max_batch_size: int = Field(default=8, ge=1)
    """Most requests one replica decodes together (Serve's dynamic batching)."""
    batch_wait_timeout_s: float = Field(default=0.01, ge=0)
    """How long a replica waits for more requests before it starts a batch that is not full."""
    max_tokens: int = Field(default=512, ge=1)
    """Largest `max_tokens` a request may ask for (400 beyond it)."""
    default_max_tokens: int = Field(default=16, ge=1)
    """`max_tokens` of a completion that names none (OpenAI's default is 16)."""
    max_n: int = Field(default=8, ge=1)
    """Largest `n` (choices per prompt) a request may ask for."""
    max_prompts: int = Field(default=64, ge=1)
    """Most prompts (or embedding inputs) in one request."""
    app_name: str = "ownlm"
    """The Serve application's name (`ownlm serve --stop` deletes it)."""

    @field_validator("autoscale")
    @classmethod
    def _min_max(cls, v: str | None) -> str | None:
        if v is None:
            return v
        m = re.fullmatch(r"(\d+):(\d+)", v.strip())
        if not m or int(m[1]) > int(m[2]) or int(m[2]) < 1:
            raise ValueError(f"autoscale must be MIN:MAX with 0 <= MIN <= MAX and MAX >= 1, e.g. 1:4; got {v!r}")
        return v.strip()

    def autoscale_range(self) -> tuple[int, int] | None:
        if self.autoscale is None:
            return None
        low, high = self.autoscale.split(":")
        return int(low), int(high)
