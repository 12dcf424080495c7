"""torch.compile of the static decoding step (model.kv_cache.decode_one_token_static), as
gpt-fast compiles its decode_one_token, with eager as the fallback.

Shapes: a compiled step serves one (batch, max_len). Decoding with it sizes the cache at the
model's whole window (max_seq_len, as gpt-fast does) and pads the batch with copies of its last
row up to a power of two (batch_bucket), so one model compiles at most a handful of graphs
(1, 2, 4, 8, ... rows) and every later request reuses one of them (dynamo caches each graph and
guards on the shapes; `dynamic=False` keeps each graph specialised to its shapes).

Options, chosen by measurement (bench/generate.py, bench/RESULTS.md): on CPU, inductor's
`cpp_wrapper` (the kernels are called from C++, not from a Python wrapper: per-step overhead is
much of what decoding one token costs; the default wrapper measured no faster than eager); on
CUDA, "reduce-overhead" (CUDA graphs: one launch per step; not measured here, no GPU). The
weights are graph inputs (dynamo inlines the model), so one graph serves every model of the
same shapes with its own weights, and weights that change are seen (a test pins both).
"""
from __future__ import annotations

import warnings

import torch

from model.kv_cache import StaticKVCache, decode_one_token_static
from model.transformer import Transformer

CPU_OPTIONS = {"cpp_wrapper": True}
CUDA_MODE = "reduce-overhead"


def batch_bucket(rows: int) -> int:
    """The batch size a compiled step runs at for `rows` sequences: the next power of two."""
    return 1 << max(0, rows - 1).bit_length()


class CompiledDecodeStep:
    """decode_one_token_static, compiled on first use for each shape; if compiling (or a
    compiled call) fails, a warning and eager from then on: decoding is never lost to it."""

    def __init__(self, device_type: str):
        kwargs = {"mode": CUDA_MODE} if device_type == "cuda" else {"options": dict(CPU_OPTIONS)}
        self.compiled = torch.compile(decode_one_token_static, dynamic=False, **kwargs)
        self.failed: str | None = None

    def __call__(self, model: Transformer, token: torch.Tensor, cache: StaticKVCache,
                 slot: torch.Tensor) -> torch.Tensor:
        if self.failed is None:
            try:
                return self.compiled(model, token, cache, slot)
            except Exception as e:  # noqa: BLE001 - any compiler failure: fall back, say why
                self.failed = f"{type(e).__name__}: {e}".splitlines()[0]
                warnings.warn(f"torch.compile of the decoding step failed ({self.failed}); decoding eagerly",
                              RuntimeWarning, stacklevel=2)
        # The step is idempotent (cache.advance() is the caller's), so a failed call can be rerun.
        return decode_one_token_static(model, token, cache, slot)


def use_compiled(setting: bool | None, device: torch.device | str) -> bool:
    """A `compile` setting (generate, chat) on a device: None compiles on CUDA, where CUDA graphs
    pay back their compile within a few hundred tokens, and decodes eagerly on CPU, where a
    compile takes tens of seconds, longer than a short completion takes to decode."""
    return torch.device(device).type == "cuda" if setting is None else setting


_steps: dict[str, CompiledDecodeStep] = {}


def compiled_decode_step(device: torch.device) -> CompiledDecodeStep:
    """The process's one compiled step for a device type (dynamo keeps a graph per model and shape)."""
    if device.type not in _steps:
        _steps[device.type] = CompiledDecodeStep(device.type)
    return _steps[device.type]
