"""A static KV cache and the one-token decoding step over it: the shape-stable pieces that
torch.compile turns into one graph (gpt-fast's decode_one_token).

The dynamic cache (model.transformer.KVCache) attends over the slots filled so far, so every
step has a new key length, and a Python int slot: fine in eager, a recompile per step when
compiled. A StaticKVCache has the same preallocated (B, KV, max_len, hd) buffers; its decoding
steps take the slot as a tensor, write keys and values there with index_copy_ and attend over
all max_len slots under a mask of the ones that hold real tokens. Every step then has the same
shapes and the same Python values, so one compiled graph serves every step of every request
of that (batch, max_len). The prompt is still prefilled by Transformer.forward, as with the
dynamic cache; left padding is tracked the same way (`valid`, `lengths`).
"""
from __future__ import annotations

import torch

from model.transformer import KVCache, LayerKVCache, Transformer


class StaticLayerKVCache(LayerKVCache):
    """One layer's keys and values; decoding steps write at a tensor slot and read every slot."""

    def update(self, start_pos: int | torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        if not isinstance(start_pos, torch.Tensor):  # the prefill, through Transformer.forward
            return super().update(start_pos, k, v)
        self.k.index_copy_(2, start_pos, k)  # k: (B, KV, 1, hd) into slot start_pos
        self.v.index_copy_(2, start_pos, v)
        return self.k, self.v  # (B, KV, max_len, hd): masked by StaticKVCache.valid


class StaticKVCache(KVCache):
    """KVCache for shape-stable decoding (decode_one_token_static): after the prefill, `valid`
    (B, max_len) marks the slots that hold real tokens and `lengths` (B,) each row's next
    rotary position, for every batch, padded or not."""

    layer_cache = StaticLayerKVCache

    def begin_decoding(self, filled: int) -> None:
        """After a prefill of `filled` slots: without padding the prefill kept no mask (SDPA's
        causal fast path); make one, so every decoding step masks the same way."""
        if self.valid is None:
            device = self.layers[0].k.device
            self.valid = torch.zeros(self.batch_size, self.max_len, dtype=torch.bool, device=device)
            self.valid[:, :filled] = True
            self.lengths = torch.full((self.batch_size,), filled, dtype=torch.long, device=device)
        if self.valid.is_cuda:  # CUDA graphs replay a step in place: its mutated inputs must not move
            for t in [self.valid, self.lengths, *(b for layer in self.layers for b in (layer.k, layer.v))]:
                torch._dynamo.mark_static_address(t)


    def advance(self) -> None:
        """After a decoding step: every row has one more real token. Kept out of the step, so
        that running a step twice (a failed compiled call, then eager) writes the same cache."""
        self.lengths.add_(1)


def decode_one_token_static(model: Transformer, token: torch.Tensor, cache: StaticKVCache,
                            slot: torch.Tensor) -> torch.Tensor:
    """Feed one token per row, token (B, 1), at slot (1,) (a tensor, so that a compiled step
    is reused at every slot); return the logits (B, V). The batch fills the whole cache; the
    caller then calls cache.advance()."""
    positions = cache.lengths[:, None]  # (B, 1): each row's real tokens so far
    rope = (model.rope_cos[positions], model.rope_sin[positions])  # (B, 1, hd/2)
    cache.valid.index_fill_(1, slot, True)
    # Unwritten slots are still invalid, so the valid slots are exactly this row's past and present.
    mask = (cache.valid[:, None, None, :], False)  # (B, 1, 1, max_len): broadcast over heads
    h = model.tok_embeddings(token)  # (B, 1, D)
    for layer, layer_cache in zip(model.layers, cache.layers):
        h = layer(h, rope, mask, layer_cache, slot)
    return model.output(model.norm(h))[:, -1]  # (B, V)
