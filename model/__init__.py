"""ownlm's model in pure PyTorch: no Ray, no MLflow (tests/model/test_boundary.py checks).

    config.py       ModelConfig (family: causal, masked or prefix), the PRESETS registry,
                    closed-form parameter and FLOP counts
    transformer.py  the Llama-style decoder, attention masks, its KV cache, lm_loss
    init.py         seeded initial weights by blocks of rows: a shard gets one process's rows
    objectives.py   the training loss of each family (next token, masked LM, prefix LM)
    generate.py     sample, prefill, decode_one_token, decode_n_tokens, generate, generate_batch,
                    generate_text(s)
    kv_cache.py     the static KV cache and the fixed-shape decoding step over it
    decode_compile.py  that step under torch.compile (per device type, eager fallback)
    embed.py        text embeddings: mean-pooled final hidden states, normalized
    tokenizer.py    the byte-level BPE wrapper, the special tokens, the chat prompt
    checkpoint.py   save and load checkpoint folders (safetensors + config.json)
    hf.py           Hugging Face Llama export and import

docs/model.md tells the whole story.

Nothing is imported here, so `import model.config` stays fast (no torch).
"""
