"""A thin wrapper over a Hugging Face `tokenizers` byte-level BPE, with the project's
special tokens. Training the tokenizer lives in pipeline/tokenize.py; this only loads
and uses one.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import tokenizers

EOT = "<|endoftext|>"
"""Separates documents in packed sequences and ends a generation."""
PAD = "<|pad|>"
"""Fills batches to a common length; its targets are ignored by the loss."""
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
"""Chat turns: a role token opens a turn and <|end|> closes it."""
END_OF_TURN = ROLE_TOKENS[-1]
MASK = "<|mask|>"
"""Stands in for the tokens a masked-LM encoder learns to recover (model family "masked")."""
SPECIAL_TOKENS = [EOT, PAD, *ROLE_TOKENS, MASK]
"""Every special token, in the order a trainer should add them (EOT gets id 0). New tokens go
at the end, so the ids of the older ones stay put."""
ROLES = ("system", "user", "assistant")

_REQUIRED = (EOT, PAD)


class Tokenizer:
    """Text <-> token ids. encode adds no special tokens: the caller places EOT and roles."""

    def __init__(self, tokenizer: tokenizers.Tokenizer):
        missing = [t for t in _REQUIRED if tokenizer.token_to_id(t) is None]
        if missing:
            raise ValueError(
                f"tokenizer lacks the special tokens {missing}: train it with "
                "special_tokens=model.tokenizer.SPECIAL_TOKENS"
            )
        self._tok = tokenizer
        # Hash the compact canonical JSON, not the file bytes: re-saving or pretty-printing
        # the same tokenizer must not change its identity in manifests and checkpoints.
        self._fingerprint = hashlib.sha256(tokenizer.to_str().encode("utf-8")).hexdigest()

    @classmethod
    def from_file(cls, path: str | Path) -> "Tokenizer":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer file at {path}")
        try:
            tok = tokenizers.Tokenizer.from_file(str(path))
        except Exception as e:  # tokenizers raises a bare Exception on malformed JSON
            raise ValueError(f"{path} is not a Hugging Face tokenizers JSON file: {e}") from e
        return cls(tok)

    def save(self, path: str | Path) -> None:
        self._tok.save(str(path))

    # ---- encoding ----

    def encode(self, text: str) -> list[int]:
        """Token ids of text, no special tokens added. A special token's literal text in the
        input (e.g. "<|user|>") still maps to its id, which is how chat templates are built."""
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """encode() for many texts at once (parallel in the Rust core).

        `encode_batch_fast` gives the same ids without computing character offsets, which nothing
        here reads; it is 20-40% faster on this corpus.
        """
        return [e.ids for e in self._tok.encode_batch_fast(texts, add_special_tokens=False)]

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        """Text of ids. Specials are kept by default so that decode(encode(s)) == s."""
        ids = [int(i) for i in ids]  # numpy or tensor ids too; the Rust side wants ints
        return self._tok.decode(ids, skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    # ---- identity ----

    @property
    def eot_id(self) -> int:
        return self._tok.token_to_id(EOT)

    @property
    def pad_id(self) -> int:
        return self._tok.token_to_id(PAD)

    @property
    def mask_id(self) -> int | None:
        """The id of <|mask|>; None for a tokenizer trained before the token existed."""
        return self._tok.token_to_id(MASK)

    @property
    def end_of_turn_id(self) -> int | None:
        """The id of <|end|>, which closes a chat turn; None when the tokenizer has no chat tokens."""
        return self._tok.token_to_id(END_OF_TURN)

    @property
    def vocab_size(self) -> int:
        """Ids in use, special tokens included: ModelConfig.vocab_size must be at least this."""
        return self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def fingerprint(self) -> str:
        """sha256 of the tokenizer's JSON: packed data and checkpoints record it, so that a
        model is never fed ids from a different vocabulary."""
        return self._fingerprint

    @property
    def backend(self) -> tokenizers.Tokenizer:
        """The wrapped `tokenizers.Tokenizer`, for what this wrapper does not cover."""
        return self._tok

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, fingerprint={self.fingerprint[:12]})"


def chat_prompt(messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
    """The text of a conversation in the role tokens: each message {"role", "content"} becomes
    "<|role|>content<|end|>", and add_generation_prompt opens the assistant's turn for the model
    to complete. Encoding the text maps each role token to its single id. The same layout is the
    chat_template of an exported Hugging Face checkpoint (model/hf.py)."""
    parts = []
    for i, m in enumerate(messages):
        role, content = m.get("role"), m.get("content")
        if role not in ROLES or not isinstance(content, str):
            raise ValueError(f"message {i} must be {{'role': one of {ROLES}, 'content': str}}, got {m!r}")
        parts.append(f"<|{role}|>{content}{END_OF_TURN}")
    if add_generation_prompt:
        parts.append("<|assistant|>")
    return "".join(parts)
