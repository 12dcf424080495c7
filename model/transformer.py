"""A Llama-style decoder, top to bottom: RMSNorm, rotary embeddings, grouped-query
attention with a KV cache, SwiGLU feed-forward, block, model, loss.

Shapes: B batch, T new tokens, S keys attended (cache + new), D dim, H query heads,
KV key/value heads, hd head_dim, V vocab.
"""
from __future__ import annotations

import math
import re

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from model import init
from model.config import ModelConfig

# SDPA broadcasts k/v heads over query groups itself from torch 2.5 on (enable_gqa=True);
# on 2.4 we repeat k/v explicitly. Both give the same numbers (a test pins it).
_torch_version = tuple(int(x) for x in re.match(r"(\d+)\.(\d+)", torch.__version__).groups())
SDPA_HAS_GQA = _torch_version >= (2, 5)


class RMSNorm(nn.Module):
    """Root-mean-square norm (Zhang & Sennrich 2019): LayerNorm without the mean and bias."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalize in float32: the mean of squares under- or overflows in bf16/fp16.
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return xf.type_as(x) * self.weight


# ---- rotary position embeddings (RoFormer, Su et al. 2021) ----

def precompute_rope(head_dim: int, max_seq_len: int, theta: float,
                    scaling: dict[str, float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of angle pos * theta^(-2j/hd) for every position and channel pair j:
    two (max_seq_len, hd/2) float32 tables. `scaling`: ModelConfig.rope_scaling (Llama 3.1)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    if scaling:
        inv_freq = llama3_scaled_frequencies(inv_freq, **scaling)
    angles = torch.outer(torch.arange(max_seq_len, dtype=torch.float32), inv_freq)  # (T, hd/2)
    return angles.cos(), angles.sin()


def llama3_scaled_frequencies(inv_freq: torch.Tensor, factor: float, low_freq_factor: float,
                              high_freq_factor: float, original_max_position_embeddings: float) -> torch.Tensor:
    """Llama 3.1's RoPE frequencies for a longer context than it was first trained on.

    A channel pair whose wavelength (2 pi / frequency) is short next to the original context
    already cycles many times within it: it keeps its frequency. One whose wavelength is long
    next to it is slowed by `factor`, as position interpolation would. In the band between, the
    frequency moves smoothly from the one to the other, by how many times the pair cycles
    within the original context.
    """
    wavelength = 2 * math.pi / inv_freq
    cycles = original_max_position_embeddings / wavelength  # turns within the original context
    # 0 at low_freq_factor turns or fewer (fully slowed), 1 at high_freq_factor or more (kept)
    keep = ((cycles - low_freq_factor) / (high_freq_factor - low_freq_factor)).clamp(0.0, 1.0)
    return keep * inv_freq + (1 - keep) * inv_freq / factor


def apply_rotary_emb(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (x[2j], x[2j+1]) of x: (B, T, H, hd) by the angles in cos, sin:
    (T, hd/2), shared by the batch, or (B, T, hd/2), one row of positions per sequence.

    Interleaved pairs, as in Meta's Llama and shared/bench/ref_gpt.py (Hugging Face's
    checkpoints pair channel j with j + hd/2 instead; model/hf.py permutes wq/wk rows).
    Done in float32 so that bf16 activations do not blur the angles.
    """
    if cos.dim() == 2:
        cos, sin = cos[None], sin[None]
    cos, sin = cos[:, :, None, :].float(), sin[:, :, None, :].float()  # (1|B, T, 1, hd/2)
    xf = x.float()
    x1, x2 = xf[..., 0::2], xf[..., 1::2]  # (B, T, H, hd/2) each
    rotated = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)  # (B, T, H, hd/2, 2)
    return rotated.flatten(-2).type_as(x)  # (B, T, H, hd)


# ---- key/value cache for generation ----

class LayerKVCache:
    """One layer's keys and values, (B, KV, max_len, hd), filled left to right."""

    def __init__(self, batch_size, n_kv_heads, max_len, head_dim, device, dtype):
        shape = (batch_size, n_kv_heads, max_len, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)

    def update(self, start_pos: int, k: torch.Tensor, v: torch.Tensor):
        """Write k, v: (B, KV, T, hd) at start_pos; return every key and value so far."""
        B, _, T, _ = k.shape
        end = start_pos + T
        self.k[:B, :, start_pos:end] = k
        self.v[:B, :, start_pos:end] = v
        # Slicing to the filled length keeps eager attention cheap; a compiled decoder
        # would attend over all max_len slots with a mask to keep shapes static instead.
        return self.k[:B, :, :end], self.v[:B, :, :end]  # (B, KV, S, hd)


class KVCache:
    """Keys and values of every layer for a batch of up to batch_size sequences.

    Batched prompts of different lengths are left-padded to one length: the cache then also
    remembers which slots hold padding (never attended to) and how many real tokens each
    row has (its next rotary position), so each row decodes as if it were alone.
    """

    layer_cache = LayerKVCache
    """What holds each layer's keys and values (model/kv_cache.py's static cache changes it)."""

    def __init__(self, cfg: ModelConfig, batch_size: int, max_len: int, device=None, dtype=None):
        self.batch_size, self.max_len = batch_size, max_len
        self.layers = [
            self.layer_cache(batch_size, cfg.resolved_n_kv_heads, max_len, cfg.head_dim, device, dtype)
            for _ in range(cfg.n_layers)
        ]
        self.valid: torch.Tensor | None = None  # (B, max_len) bool once padding was written
        self.lengths: torch.Tensor | None = None  # (B,) real tokens per row, with `valid`

    def __getitem__(self, layer: int) -> LayerKVCache:
        return self.layers[layer]

    def write_padding(self, B: int, T: int, start_pos: int, padding_mask: torch.Tensor | None):
        """Record which of the T new slots start_pos.. of B rows hold real tokens (padding_mask
        (B, T), True = real; None = all real); return their rotary positions ((B, T), or None
        for the shared start_pos..) and the key mask ((B, S) bool, or None while no slot
        of the cache is padding)."""
        if self.valid is None and (padding_mask is None or bool(padding_mask.all())):
            return None, None
        device = self.layers[0].k.device
        if self.valid is None:  # the first padding: every slot before it was a real token
            self.valid = torch.zeros(self.batch_size, self.max_len, dtype=torch.bool, device=device)
            self.valid[:, :start_pos] = True
            self.lengths = torch.full((self.batch_size,), start_pos, dtype=torch.long, device=device)
        new = padding_mask if padding_mask is not None else torch.ones(B, T, dtype=torch.bool, device=device)
        self.valid[:B, start_pos:start_pos + T] = new
        positions = self.lengths[:B, None] + new.long().cumsum(1) - 1  # (B, T)
        self.lengths[:B] += new.sum(1)
        return positions.clamp(min=0), self.valid[:B, :start_pos + T]


# ---- attention ----

def causal_mask(T: int, start_pos: int, device) -> torch.Tensor:
    """(T, start_pos + T) bool, True where query i (at position start_pos + i) may look."""
    q_pos = start_pos + torch.arange(T, device=device)[:, None]
    k_pos = torch.arange(start_pos + T, device=device)[None, :]
    return k_pos <= q_pos


def attention_mask(
    T: int,
    start_pos: int = 0,
    *,
    causal: bool = True,
    prefix_len: int | torch.Tensor | None = None,
    key_valid: torch.Tensor | None = None,
    segments: torch.Tensor | None = None,
    device=None,
) -> tuple[torch.Tensor | None, bool]:
    """What T queries at slots start_pos.. may attend to among the S = start_pos + T keys,
    as (attn_mask, is_causal) for scaled_dot_product_attention; attn_mask is bool, True
    where a query may look: (T, S) or (B, 1, T, S).

    causal: query i sees keys up to its own slot; otherwise every key (a masked-LM encoder).
    prefix_len: keys in slots below it are seen by every query (the prefix LM's bidirectional
    prefix); an int, or (B,) per sequence.
    key_valid: (B, S) bool, False for padding slots, which no query sees, except that a padding
    query sees itself: a row of all -inf would make softmax NaN, and the NaN would reach the
    real tokens through the values (0 * NaN is NaN).
    segments: (B, S) ids of the packed example each slot belongs to: a query sees only keys of
    its own example, so examples packed into one row do not attend to each other.
    """
    S = start_pos + T
    if T == 1:
        prefix_len = None  # the one query sits in the last slot: causal or not, it sees every key
    if prefix_len is None and key_valid is None and segments is None:
        if not causal or T == 1:
            return None, False  # every key: an encoder, or one decoding step
        if T == S:
            return None, True  # the plain triangle: SDPA's fast causal path
        # Prefill after a prefix: SDPA's is_causal aligns the triangle to the top-left corner,
        # which is wrong when S > T, so spell the mask out.
        return causal_mask(T, start_pos, device), False
    q_pos = start_pos + torch.arange(T, device=device)[:, None]  # (T, 1)
    k_pos = torch.arange(S, device=device)[None, :]  # (1, S)
    allowed = (k_pos <= q_pos) if causal else torch.ones(T, S, dtype=torch.bool, device=device)
    allowed = allowed[None]  # (1, T, S)
    if prefix_len is not None:
        prefix = torch.as_tensor(prefix_len, device=device).view(-1, 1, 1)  # (B|1, 1, 1)
        allowed = allowed | (k_pos[None] < prefix)  # (B|1, T, S)
    if key_valid is not None:
        allowed = (allowed & key_valid[:, None, :]) | (k_pos == q_pos)[None]  # (B, T, S)
    if segments is not None:
        allowed = allowed & (segments[:, start_pos:, None] == segments[:, None, :])  # (B, T, S)
    return allowed[:, None], False  # (B|1, 1, T, S): broadcast over heads


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(B, KV, S, hd) -> (B, KV * n_rep, S, hd): each k/v head serves n_rep query heads."""
    if n_rep == 1:
        return x
    B, KV, S, hd = x.shape
    return x[:, :, None].expand(B, KV, n_rep, S, hd).reshape(B, KV * n_rep, S, hd)


def attend(q, k, v, mask: torch.Tensor | None = None, is_causal: bool = False,
           use_sdpa_gqa: bool = SDPA_HAS_GQA) -> torch.Tensor:
    """Softmax attention of q: (B, H, T, hd) over k, v: (B, KV, S, hd) under a mask from
    attention_mask(); k/v heads serve H // KV query heads each (grouped-query attention)."""
    n_rep = q.shape[1] // k.shape[1]
    if n_rep > 1 and use_sdpa_gqa:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, enable_gqa=True)
    k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)


class Attention(nn.Module):
    """Multi-head self-attention with rotary positions and grouped-query k/v heads."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.resolved_n_kv_heads, cfg.head_dim
        self.wq = nn.Linear(cfg.dim, self.n_heads * self.head_dim, bias=False)
        self.wk = nn.Linear(cfg.dim, self.n_kv_heads * self.head_dim, bias=False)
        self.wv = nn.Linear(cfg.dim, self.n_kv_heads * self.head_dim, bias=False)
        self.wo = nn.Linear(self.n_heads * self.head_dim, cfg.dim, bias=False)

    def forward(self, x, rope: tuple, mask: tuple, cache: LayerKVCache | None = None, start_pos: int = 0):
        B, T, _ = x.shape
        q = self.wq(x).view(B, T, self.n_heads, self.head_dim)  # (B, T, H, hd)
        k = self.wk(x).view(B, T, self.n_kv_heads, self.head_dim)  # (B, T, KV, hd)
        v = self.wv(x).view(B, T, self.n_kv_heads, self.head_dim)  # (B, T, KV, hd)
        # RoPE in (B, T, H, hd), where the (T, hd/2) tables line up with dims 1 and 3.
        q, k = apply_rotary_emb(q, *rope), apply_rotary_emb(k, *rope)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, H|KV, T, hd): SDPA's layout
        if cache is not None:
            k, v = cache.update(start_pos, k, v)  # (B, KV, S, hd)
        y = attend(q, k, v, *mask)  # (B, H, T, hd)
        y = y.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim)  # (B, T, D)
        return self.wo(y)


class FeedForward(nn.Module):
    """SwiGLU (Shazeer 2020): w2(silu(w1 x) * w3 x), w1 the gate and w3 the up projection."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden_dim, bias=False)
        self.w2 = nn.Linear(hidden_dim, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    """Pre-norm residual block: attention, then feed-forward, each on a normalized input."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attention_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.feed_forward = FeedForward(cfg.dim, cfg.resolved_ffn_dim)

    def forward(self, x, rope: tuple, mask: tuple, cache: LayerKVCache | None = None, start_pos: int = 0):
        h = x + self.attn(self.attention_norm(x), rope, mask, cache, start_pos)
        return h + self.feed_forward(self.ffn_norm(h))


class Transformer(nn.Module):
    """Token ids (B, T) -> logits (B, T, V): next-token logits for the causal and prefix
    families, logits of the token at each position for the masked family."""

    def __init__(self, cfg: ModelConfig, activation_checkpointing: bool | None = None):
        super().__init__()
        self.cfg = cfg.validate()
        self.activation_checkpointing = (
            cfg.activation_checkpointing if activation_checkpointing is None else activation_checkpointing
        )
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.output = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        self.init_rope()
        self.init_weights()
        self.tie_weights()

    # ---- setup ----

    def init_rope(self) -> None:
        """(Re)build the float32 RoPE tables on the embedding's device.

        Non-persistent buffers: they derive from the config, so checkpoints do not carry
        them, and they follow model.to(device). model.to(bfloat16) casts them too (as in
        gpt-fast); call this again afterwards to get float32 angles back (load_model does),
        and after model.to_empty().
        """
        cos, sin = precompute_rope(self.cfg.head_dim, self.cfg.max_seq_len, self.cfg.rope_theta,
                                   self.cfg.rope_scaling)
        device = self.tok_embeddings.weight.device
        self.register_buffer("rope_cos", cos.to(device), persistent=False)
        self.register_buffer("rope_sin", sin.to(device), persistent=False)

    @torch.no_grad()
    def init_weights(self, seed: int | None = None) -> None:
        """Normal(0, init_std) for every matrix, norms at one. The projections that write
        into the residual stream (attention wo, feed-forward w2) get std / sqrt(2 * n_layers)
        (GPT-2, Radford et al. 2019): the stream sums 2 such outputs per layer, so this keeps
        its variance at init independent of depth.

        The values are a function of (seed, parameter name, row) (model/init.py), so a model
        sharded before this runs (FSDP2 on the meta device) gets on each rank exactly the rows
        one process would. seed None: one drawn from torch's global generator."""
        seed = init.seed_from_global_rng() if seed is None else seed
        std = self.cfg.init_std
        for name, p in self.named_parameters():
            if p.dim() == 1:
                nn.init.ones_(p)  # RMSNorm weights
            elif name.endswith(("attn.wo.weight", "feed_forward.w2.weight")):
                init.normal_(p, name, seed, std / math.sqrt(2 * self.cfg.n_layers))
            else:
                init.normal_(p, name, seed, std)

    def tie_weights(self) -> None:
        """Make the output head and the embedding one Parameter when the config says so.
        Needed again after anything that rebuilds parameters (to_empty, load with assign)."""
        if self.cfg.tie_embeddings:
            self.output.weight = self.tok_embeddings.weight

    def enable_activation_checkpointing(self, enabled: bool = True) -> None:
        """Recompute each block's activations in backward instead of storing them: memory
        per layer drops to the block input, for about one extra forward of compute."""
        self.activation_checkpointing = enabled

    def make_cache(self, batch_size: int, max_len: int | None = None, device=None, dtype=None) -> KVCache:
        """An empty KV cache; device and dtype default to the model's weights'."""
        weight = self.tok_embeddings.weight
        max_len = self.cfg.max_seq_len if max_len is None else max_len
        return KVCache(self.cfg, batch_size, max_len, device or weight.device, dtype or weight.dtype)

    def num_params(self, include_embeddings: bool = True) -> int:
        """Parameters counted once each (a tied head is the embedding); see config.count_params."""
        n = sum(p.numel() for p in self.parameters())
        return n if include_embeddings else n - self.tok_embeddings.weight.numel()

    # ---- forward ----

    def forward(
        self,
        tokens: torch.Tensor,
        cache: KVCache | None = None,
        start_pos: int = 0,
        *,
        padding_mask: torch.Tensor | None = None,
        prefix_len: int | torch.Tensor | None = None,
        segments: torch.Tensor | None = None,
        return_hidden: bool = False,
    ) -> torch.Tensor:
        """tokens: (B, T) ids in slots start_pos.. -> logits (B, T, V) in the compute dtype (bf16
        under autocast; lm_loss casts to float32), or with return_hidden the final normed
        hidden states (B, T, D) instead.

        cache: the new keys and values are written at start_pos, and attention spans slots
        0 .. start_pos + T - 1. padding_mask: (B, T) bool, False where tokens are padding
        (batched prompts are left-padded): padding is never attended to, and each row's
        rotary positions count its real tokens only, so a padded row computes what it would
        alone. prefix_len (prefix family): slots below it form the bidirectional prefix.
        segments: (B, T) ids of the examples packed into each row (fine-tuning, no cache): each
        example attends only to itself and its rotary positions start at 0, so a packed row
        computes what its examples would one by one.
        """
        B, T = tokens.shape
        self._check_positions(B, T, cache, start_pos, prefix_len)
        if segments is not None:
            if cache is not None or padding_mask is not None:
                raise ValueError("segments (packed examples) go without a KV cache or padding_mask")
            positions, key_valid = segment_positions(segments), None
        else:
            positions, key_valid = self._positions(B, T, cache, start_pos, padding_mask)
        if positions is None:
            rope = (self.rope_cos[start_pos:start_pos + T], self.rope_sin[start_pos:start_pos + T])  # (T, hd/2)
        else:
            rope = (self.rope_cos[positions], self.rope_sin[positions])  # (B, T, hd/2)
        mask = attention_mask(T, start_pos, causal=self.cfg.family != "masked", prefix_len=prefix_len,
                              key_valid=key_valid, segments=segments, device=tokens.device)
        h = self.tok_embeddings(tokens)  # (B, T, D)
        recompute = self.activation_checkpointing and self.training and torch.is_grad_enabled()
        for i, layer in enumerate(self.layers):
            if recompute and cache is None:
                h = checkpoint(layer, h, rope, mask, use_reentrant=False)
            else:
                h = layer(h, rope, mask, None if cache is None else cache[i], start_pos)
        h = self.norm(h)  # (B, T, D)
        return h if return_hidden else self.output(h)  # (B, T, V)

    def _positions(self, B, T, cache, start_pos, padding_mask):
        """Rotary positions ((B, T), or None for the shared start_pos..) and the key mask."""
        if cache is not None:
            return cache.write_padding(B, T, start_pos, padding_mask)
        if padding_mask is None or bool(padding_mask.all()):
            return None, None
        positions = start_pos + padding_mask.long().cumsum(1) - 1  # (B, T)
        return positions.clamp(min=0), padding_mask

    def _check_positions(self, B: int, T: int, cache: KVCache | None, start_pos: int, prefix_len) -> None:
        end = start_pos + T
        if start_pos < 0 or end > self.cfg.max_seq_len:
            raise ValueError(
                f"positions {start_pos}..{end - 1} fall outside max_seq_len={self.cfg.max_seq_len}: "
                "shorten the input or raise max_seq_len"
            )
        if cache is not None and (end > cache.max_len or B > cache.batch_size):
            raise ValueError(
                f"a KV cache for batch {cache.batch_size} x {cache.max_len} positions cannot hold "
                f"batch {B} at positions {start_pos}..{end - 1}: make a larger cache"
            )
        if prefix_len is not None and self.cfg.family != "prefix":
            raise ValueError(f"prefix_len is for the prefix family; this model's family is {self.cfg.family!r}")


def segment_positions(segments: torch.Tensor) -> torch.Tensor:
    """(B, T) example ids -> each slot's position within its example (0 where an example starts)."""
    T = segments.shape[1]
    idx = torch.arange(T, device=segments.device).expand_as(segments)  # (B, T)
    starts = torch.ones_like(segments, dtype=torch.bool)
    starts[:, 1:] = segments[:, 1:] != segments[:, :-1]
    first = torch.where(starts, idx, torch.zeros_like(idx)).cummax(dim=1).values  # (B, T)
    return idx - first


def lm_loss(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Mean next-token cross entropy in float32 over the targets that are not ignore_index.

    logits (B, T, V), targets (B, T) already shifted (targets[:, t] is the token after
    tokens[:, t]). NaN when every target is ignored (a mean over nothing); the trainer's
    non-finite guard catches that batch.
    """
    return F.cross_entropy(
        logits.float().flatten(0, -2), targets.flatten(), ignore_index=ignore_index
    )
