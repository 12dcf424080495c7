"""ownlm's model in pure PyTorch: no Ray, no MLflow (tests/model/test_boundary.py checks).

    config.py       ModelConfig, the PRESETS registry, closed-form parameter and FLOP counts
    transformer.py  the Llama-style decoder, its KV cache, lm_loss
    generate.py     sample, prefill, decode_one_token, decode_n_tokens, generate, generate_text
    tokenizer.py    the byte-level BPE wrapper and the special tokens
    checkpoint.py   save and load checkpoint folders (safetensors + config.json)

Nothing is imported here, so `import model.config` stays fast (no torch).
"""
