"""From curated text to training sequences: two stages.

    curated.py    reading the curated Parquet shards; TokenizeError
    tokenizer.py  the `tokenizer` stage: train a byte-level BPE tokenizer
    pack.py       the `tokenize` stage: tokenize and pack into `.npy` shards + manifest (Ray Data)
"""
