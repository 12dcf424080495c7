"""Model shapes: the typed config, one registry of named presets, and the closed-form
parameter and FLOP counts that the trainer and the benchmarks quote.

Pure Python on purpose (no torch import): a pipeline config can check a model section
in milliseconds, before any heavy import or any work starts.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

FAMILIES = ("causal", "masked", "prefix")
"""Model families (see `ModelConfig.family`), one objective and attention pattern each."""


@dataclass(kw_only=True)
class ModelConfig:
    """Shape of a Llama-style decoder (RMSNorm, RoPE, grouped-query attention, SwiGLU)."""

    vocab_size: int = 4096
    """Rows of the token embedding (and the output head); must cover the tokenizer's ids."""
    dim: int
    """Width of the residual stream (d_model)."""
    n_layers: int
    """Number of transformer blocks."""
    n_heads: int
    """Query heads per attention layer; head_dim = dim // n_heads."""
    n_kv_heads: int | None = None
    """Key/value heads; None means n_heads (plain multi-head). Fewer gives grouped-query
    attention (GQA, Ainslie et al. 2023): each k/v head serves n_heads // n_kv_heads query
    heads, shrinking the KV cache by the same factor."""
    ffn_dim: int | None = None
    """Hidden width of the SwiGLU feed-forward; None means the Llama rule: int(8 * dim / 3)
    rounded up to a multiple of `multiple_of` (2/3 of 4*dim keeps the FLOPs of a 4x MLP,
    since SwiGLU has three matrices instead of two)."""
    multiple_of: int = 64
    """Rounding for the derived ffn_dim, so matmul shapes stay friendly to tensor cores."""
    max_seq_len: int = 256
    """Longest sequence (prompt + generated) the model sees; sizes the RoPE tables."""
    rope_theta: float = 10000.0
    """Base of the rotary frequencies (Su et al. 2021); Llama 3 uses 500000 for long context."""
    rope_scaling: dict[str, float] | None = None
    """Llama 3.1's context extension of RoPE (Hugging Face rope_type "llama3"), as a dict of
    `factor`, `low_freq_factor`, `high_freq_factor` and `original_max_position_embeddings`:
    frequencies whose wavelength exceeds the original context / low_freq_factor are divided by
    `factor`, those shorter than original / high_freq_factor are kept, and the band between is
    interpolated. None: plain RoPE. Imported Llama 3.1+ checkpoints carry it."""
    norm_eps: float = 1e-5
    """Epsilon inside RMSNorm's square root."""
    tie_embeddings: bool = False
    """Share one matrix between the token embedding and the output head (GPT-2 style);
    saves vocab_size * dim parameters, which matters most for small models."""
    init_std: float = 0.02
    """Standard deviation of the normal init of every weight matrix (GPT-2 / Llama)."""
    family: str = "causal"
    """What the model is trained to do; the same blocks serve all three, only the attention
    pattern and the objective (model/objectives.py) change:
    "causal": autoregressive decoder, each token sees the ones before it, next-token loss (GPT, Llama);
    "masked": bidirectional encoder, every token sees every token, masked-LM loss with BERT's
    80/10/10 corruption of `mask_prob` of the tokens (Devlin et al. 2019);
    "prefix": prefix LM, bidirectional over a prefix and causal after it, next-token loss on the
    part after the prefix only (Raffel et al. 2020, Sec. 3.2.1; UniLM, Dong et al. 2019)."""
    mask_prob: float = 0.15
    """Masked family: the fraction of tokens the objective corrupts and predicts (BERT: 0.15)."""
    mask_id: int | None = None
    """Masked family: the id of the tokenizer's <|mask|> token. The trainer fills it in from the
    tokenizer, so the checkpoint carries it; objectives also take it as an argument."""
    activation_checkpointing: bool = False
    """Recompute each block's activations in the backward pass instead of storing them: memory
    per layer drops to the block input, for about one extra forward of compute (Chen et al. 2016)."""

    # ---- derived sizes ----

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def resolved_n_kv_heads(self) -> int:
        return self.n_heads if self.n_kv_heads is None else self.n_kv_heads

    @property
    def resolved_ffn_dim(self) -> int:
        if self.ffn_dim is not None:
            return self.ffn_dim
        hidden = int(8 * self.dim / 3)
        return self.multiple_of * math.ceil(hidden / self.multiple_of)

    # ---- validation: collect every problem, then raise once ----

    def problems(self) -> list[str]:
        """Every problem with this config, each naming the field and the fix; [] when valid."""
        out: list[str] = []
        ints = ("vocab_size", "dim", "n_layers", "n_heads", "multiple_of", "max_seq_len")
        optional_ints = ("n_kv_heads", "ffn_dim")
        floats = ("rope_theta", "norm_eps", "init_std")
        for name in ints + optional_ints:
            value = getattr(self, name)
            if value is None and name in optional_ints:
                continue
            # bool is an int subclass; `dim: true` from YAML is a typo, not a width of 1.
            if not isinstance(value, int) or isinstance(value, bool):
                out.append(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
            elif value <= 0:
                out.append(f"{name} must be positive, got {value}")
        for name in floats:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                out.append(f"{name} must be a number, got {value!r} ({type(value).__name__})")
            elif not value > 0:
                out.append(f"{name} must be positive, got {value}")
        for name in ("tie_embeddings", "activation_checkpointing"):
            if not isinstance(getattr(self, name), bool):
                out.append(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.family not in FAMILIES:
            out.append(f"family must be one of {', '.join(FAMILIES)}, got {self.family!r}")
        if isinstance(self.mask_prob, bool) or not isinstance(self.mask_prob, (int, float)) \
                or not 0 < self.mask_prob < 1:
            out.append(f"mask_prob must be a fraction in (0, 1), e.g. 0.15, got {self.mask_prob!r}")
        if self.mask_id is not None and (not isinstance(self.mask_id, int) or isinstance(self.mask_id, bool)
                                         or not 0 <= self.mask_id):
            out.append(f"mask_id must be a token id (an integer >= 0) or null, got {self.mask_id!r}")
        out += _rope_scaling_problems(self.rope_scaling)
        if out:
            return out  # the shape checks below need well-typed, positive sizes

        if self.dim % self.n_heads:
            out.append(
                f"dim ({self.dim}) must be divisible by n_heads ({self.n_heads}): "
                f"pick n_heads from {_divisors(self.dim)}"
            )
        elif self.head_dim % 2:
            out.append(
                f"head_dim = dim / n_heads = {self.head_dim} must be even for rotary embeddings "
                "(they rotate pairs of channels): change dim or n_heads"
            )
        if isinstance(self.mask_id, int) and self.mask_id >= self.vocab_size:
            out.append(f"mask_id ({self.mask_id}) must be below vocab_size ({self.vocab_size}): "
                       "use the id of <|mask|> in the model's tokenizer")
        kv = self.resolved_n_kv_heads
        if self.n_heads % kv:
            out.append(
                f"n_heads ({self.n_heads}) must be divisible by n_kv_heads ({kv}): "
                f"pick n_kv_heads from {_divisors(self.n_heads)}"
            )
        return out

    def validate(self) -> "ModelConfig":
        """Raise ValueError listing every problem at once; return self when valid."""
        problems = self.problems()
        if problems:
            lines = "\n".join(f"  - {p}" for p in problems)
            raise ValueError(f"invalid ModelConfig ({len(problems)} problems):\n{lines}")
        return self

    # ---- (de)serialization ----

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        """Build from a dict (config.json, a YAML section); unknown or missing keys raise
        ValueError. Values are not checked here: call validate() (Transformer does)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(
                f"unknown ModelConfig keys {unknown}; valid keys are {sorted(known)}"
            )
        required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING}
        missing = sorted(required - set(d))
        if missing:
            raise ValueError(f"ModelConfig is missing required keys {missing}")
        return cls(**d)


ROPE_SCALING_KEYS = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")


def _rope_scaling_problems(scaling: Any) -> list[str]:
    if scaling is None:
        return []
    if not isinstance(scaling, dict) or set(scaling) != set(ROPE_SCALING_KEYS):
        return [f"rope_scaling must be null or a dict of exactly {', '.join(ROPE_SCALING_KEYS)}, got {scaling!r}"]
    bad = [k for k, v in scaling.items() if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0]
    if bad:
        return [f"rope_scaling {', '.join(bad)} must be positive numbers, got {scaling!r}"]
    if not scaling["high_freq_factor"] > scaling["low_freq_factor"]:
        return [f"rope_scaling high_freq_factor must exceed low_freq_factor, got {scaling!r}"]
    return []


def _divisors(n: int) -> list[int]:
    return [k for k in range(1, n + 1) if n % k == 0]


# ---- the linear layers a LoRA adapter can sit on (model/lora.py), by their names in Transformer ----

LORA_TARGETS = ("wq", "wk", "wv", "wo", "w1", "w2", "w3")
"""Attention q, k, v, output projections, then the feed-forward gate, down and up projections."""
DEFAULT_LORA_TARGETS = ("wq", "wv")
"""The LoRA paper's choice (Hu et al. 2021, sec. 7.1): attention queries and values."""


# ---- the one registry of named sizes (torchtitan's llama3_configs, gpt-fast's table) ----

PRESETS: dict[str, ModelConfig] = {
    # Every test and smoke run: ~0.36M params, nearly all of them the (tied) embedding.
    "debug": ModelConfig(
        dim=64, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=128, tie_embeddings=True
    ),
    # Trains on a laptop CPU in minutes: ~4M params.
    "tiny": ModelConfig(
        dim=256, n_layers=4, n_heads=8, n_kv_heads=4, max_seq_len=256, tie_embeddings=True
    ),
    # GPT-2 small's shape with Llama blocks; the same model as shared/bench/ref_gpt.py
    # (untied head, ffn 2048), so tokens/s and MFU compare directly.
    "124m": ModelConfig(
        vocab_size=32768, dim=768, n_layers=12, n_heads=12, ffn_dim=2048, max_seq_len=1024
    ),
    # GPT-2 medium's shape (24 x 1024, 16 heads), Llama blocks, tied embeddings.
    "350m": ModelConfig(
        vocab_size=32768, dim=1024, n_layers=24, n_heads=16, multiple_of=256,
        max_seq_len=2048, tie_embeddings=True,
    ),
    # Llama-3.2-1B's shape.
    "1b": ModelConfig(
        vocab_size=128256, dim=2048, n_layers=16, n_heads=32, n_kv_heads=8, ffn_dim=8192,
        max_seq_len=8192, rope_theta=500000.0, tie_embeddings=True,
    ),
    # Llama-3.2-3B's shape.
    "3b": ModelConfig(
        vocab_size=128256, dim=3072, n_layers=28, n_heads=24, n_kv_heads=8, ffn_dim=8192,
        max_seq_len=8192, rope_theta=500000.0, tie_embeddings=True,
    ),
    # Llama-3-8B's shape.
    "8b": ModelConfig(
        vocab_size=128256, dim=4096, n_layers=32, n_heads=32, n_kv_heads=8, ffn_dim=14336,
        max_seq_len=8192, rope_theta=500000.0,
    ),
}


def get_preset(name: str, **overrides: Any) -> ModelConfig:
    """A fresh, validated copy of a named preset with some fields replaced."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown ModelConfig override keys {unknown}; valid keys are {sorted(known)}")
    return dataclasses.replace(PRESETS[name], **overrides).validate()


# ---- closed-form counts ----

def count_params(cfg: ModelConfig, include_embeddings: bool = True) -> int:
    """Parameters of Transformer(cfg), from the shapes alone (equals sum of p.numel()).

    include_embeddings=False drops the input token embedding (a table lookup, no FLOPs).
    An untied output head is a matmul and stays counted, as in shared/bench/ref_gpt.py;
    a tied head has no parameters of its own, so it leaves with the embedding.
    """
    d, hd, kv = cfg.dim, cfg.head_dim, cfg.resolved_n_kv_heads
    attention = d * (cfg.n_heads * hd) + 2 * d * (kv * hd) + (cfg.n_heads * hd) * d  # q, k, v, o
    feed_forward = 3 * d * cfg.resolved_ffn_dim  # SwiGLU: gate, up, down
    norms = 2 * d  # attention_norm and ffn_norm weights
    per_layer = attention + feed_forward + norms
    embedding = cfg.vocab_size * d
    head = 0 if cfg.tie_embeddings else cfg.vocab_size * d
    body = cfg.n_layers * per_layer + d + head  # + final norm
    return body + (embedding if include_embeddings else 0)


def flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    """Training FLOPs per token (forward + backward) at context length seq_len.

    6 * N counts the matmuls: 2 FLOPs per multiply-add forward, twice that backward
    (Kaplan et al. 2020). N is every weight a token is multiplied by: the non-embedding
    parameters plus the output head, which costs the same tied or not. 12 * L * dim * T adds
    attention's QK^T and AV, which have no parameters (PaLM, Chowdhery et al. 2022, App. B),
    counted over the full T x T score matrix as ref_gpt.py does (causal masking would halve
    the work actually needed; MFU conventions keep the full count).
    """
    n = count_params(cfg, include_embeddings=False)
    if cfg.tie_embeddings:
        n += cfg.vocab_size * cfg.dim  # the head's matmul runs even when its weight is shared
    return 6.0 * n + 12.0 * cfg.n_layers * cfg.dim * seq_len
