"""A thin wrapper over a Hugging Face `tokenizers` byte-level BPE, with the project's
special tokens. Training the tokenizer lives in pipeline/tokenize.py; this only loads
and uses one.

ownlm's own tokenizers carry every special token below. A tokenizer that came with an imported
model (model/hf.py) keeps its own vocabulary: each of ownlm's *roles* (end-of-text, padding,
the chat roles, mask) is then mapped onto a token it already has, or onto nothing. The mapping
lives in the checkpoint's metadata ("tokenizer_roles"; model.checkpoint.load_tokenizer passes
it here), and a role without a token is reported, by name, only when something needs it
(`require`). model.checkpoint.add_special_tokens adds the missing ones explicitly.
"""
import hashlib
from pathlib import Path

import tokenizers

from model.errors import InputError, MissingInput

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

OWN_TOKENS = {"eot": EOT, "pad": PAD, "system": ROLE_TOKENS[0], "user": ROLE_TOKENS[1],
              "assistant": ROLE_TOKENS[2], "end_of_turn": END_OF_TURN, "mask": MASK}
"""ownlm's token for each role (a tokenizer trained by ownlm has them all)."""
TOKEN_ROLES = (*OWN_TOKENS, "bos")
"""Every role a token can play. "bos" (begin-of-sequence) is not ownlm's: our documents are
separated by end-of-text; an imported Llama's tokenizer may name one, and it is kept for export."""
CHAT_ROLES = ("system", "user", "assistant", "end_of_turn")
"""The roles a chat prompt needs (chat, fine-tuning on conversations)."""
_DESCRIPTIONS = {"eot": "end-of-text", "pad": "padding", "system": "system-turn", "user": "user-turn",
                 "assistant": "assistant-turn", "end_of_turn": "end-of-turn", "mask": "mask",
                 "bos": "begin-of-sequence"}

_REQUIRED = (EOT, PAD)


class MissingSpecialTokens(InputError):
    """The tokenizer has no token for a role that an operation needs."""


def check_roles(roles: dict) -> dict[str, str | None]:
    """A complete role -> token mapping (absent roles -> None) from a partial one; unknown roles raise."""
    if not isinstance(roles, dict):
        raise ValueError(f"tokenizer roles must be a dict of role -> token, got {roles!r}")
    unknown = sorted(set(roles) - set(TOKEN_ROLES))
    if unknown:
        raise ValueError(f"unknown tokenizer roles {unknown}; the roles are {list(TOKEN_ROLES)}")
    bad = {r: t for r, t in roles.items() if t is not None and not (isinstance(t, str) and t)}
    if bad:
        raise ValueError(f"tokenizer roles must map to a token string or null, got {bad}")
    return {r: roles.get(r) for r in TOKEN_ROLES}


class Tokenizer:
    """Text <-> token ids. encode adds no special tokens: the caller places EOT and roles.

    roles: which token plays each of ownlm's roles ({"eot": "</s>", "pad": None, ...}, see
    TOKEN_ROLES; roles left out have no token). None (the default) means ownlm's own tokens, and
    then end-of-text and padding must be there, as in every tokenizer ownlm trains. With roles
    given nothing is required up front; each mapped token must exist in the tokenizer.
    """

    def __init__(self, tokenizer: tokenizers.Tokenizer, roles: dict[str, str | None] | None = None):
        if roles is None:
            missing = [t for t in _REQUIRED if tokenizer.token_to_id(t) is None]
            if missing:
                raise ValueError(
                    f"tokenizer lacks the special tokens {missing}: train it with "
                    "special_tokens=model.tokenizer.SPECIAL_TOKENS"
                )
            roles = {r: t for r, t in OWN_TOKENS.items() if tokenizer.token_to_id(t) is not None}
        roles = check_roles(roles)
        absent = {r: t for r, t in roles.items() if t is not None and tokenizer.token_to_id(t) is None}
        if absent:
            raise ValueError(f"tokenizer roles name tokens the tokenizer does not have: {absent}")
        self._tok = tokenizer
        self._roles = roles
        # Hash the compact canonical JSON, not the file bytes: re-saving or pretty-printing
        # the same tokenizer must not change its identity in manifests and checkpoints.
        self._fingerprint = hashlib.sha256(tokenizer.to_str().encode("utf-8")).hexdigest()

    @classmethod
    def from_file(cls, path: str | Path, roles: dict[str, str | None] | None = None) -> "Tokenizer":
        path = Path(path)
        if not path.is_file():
            raise MissingInput(f"no tokenizer file at {path}")
        try:
            tok = tokenizers.Tokenizer.from_file(str(path))
        except Exception as e:  # tokenizers raises a bare Exception on malformed JSON
            raise InputError(f"{path} is not a Hugging Face tokenizers JSON file: {e}") from e
        return cls(tok, roles)

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
    def roles(self) -> dict[str, str | None]:
        """role -> the token that plays it (None: this tokenizer has none), for every role in TOKEN_ROLES."""
        return dict(self._roles)

    def role_id(self, role: str) -> int | None:
        """The id of the token that plays role, or None when the tokenizer has none."""
        if role not in self._roles:
            raise ValueError(f"unknown tokenizer role {role!r}; the roles are {list(TOKEN_ROLES)}")
        token = self._roles[role]
        return None if token is None else self._tok.token_to_id(token)

    def missing(self, *roles: str) -> list[str]:
        """Those of roles (default: all of ownlm's) that have no token here."""
        return [r for r in (roles or tuple(OWN_TOKENS)) if self.role_id(r) is None]

    def require(self, *roles: str, purpose: str) -> None:
        """Raise MissingSpecialTokens, naming the roles and the fix, when any of roles has no token.
        purpose says what needs them ("chat", "the masked family", ...)."""
        missing = self.missing(*roles)
        if missing:
            names = ", ".join(f"{_DESCRIPTIONS[r]} ({r})" for r in missing)
            own = [OWN_TOKENS[r] for r in missing if r in OWN_TOKENS]
            fix = (f"add them with model.checkpoint.add_special_tokens(checkpoint, {own}), which grows the "
                   "embedding to cover them and records the resize in the checkpoint") if own else \
                "this role is only ever taken from an imported tokenizer"
            raise MissingSpecialTokens(
                f"{purpose} needs special tokens this tokenizer does not have: {names}. ownlm's own "
                f"tokenizers have them all; for this one (an imported model's?) {fix}")

    @property
    def eot_id(self) -> int:
        """The end-of-text id; raises MissingSpecialTokens when the tokenizer has none."""
        self.require("eot", purpose="separating documents and stopping generation")
        return self.role_id("eot")

    @property
    def pad_id(self) -> int:
        """The padding id; raises MissingSpecialTokens when the tokenizer has none."""
        self.require("pad", purpose="padding a batch")
        return self.role_id("pad")

    @property
    def mask_id(self) -> int | None:
        """The id of the mask token (<|mask|>); None for a tokenizer without one (trained
        before the token existed, or imported)."""
        return self.role_id("mask")

    @property
    def end_of_turn_id(self) -> int | None:
        """The id of the token that closes a chat turn (<|end|>); None when the tokenizer has no chat tokens."""
        return self.role_id("end_of_turn")

    @property
    def bos_id(self) -> int | None:
        """An imported tokenizer's begin-of-sequence id; None for ownlm's, which have no such token."""
        return self.role_id("bos")

    def chat_prompt(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """model.tokenizer.chat_prompt in this tokenizer's role tokens (the same text for ownlm's own
        tokenizers); raises MissingSpecialTokens when it has none for the chat roles."""
        self.require(*CHAT_ROLES, purpose="a chat prompt")
        return chat_prompt(messages, add_generation_prompt, tokens=self._roles)

    def encode_chat(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> list[int]:
        """The ids of self.chat_prompt(messages, add_generation_prompt)."""
        return self.encode(self.chat_prompt(messages, add_generation_prompt))

    def encode_chat_spans(self, messages: list[dict[str, str]],
                          add_generation_prompt: bool = False) -> list[tuple[list[int], str]]:
        """chat_spans encoded: (ids, role) per piece; the ids joined are encode_chat's."""
        self.require(*CHAT_ROLES, purpose="a chat prompt")
        spans = chat_spans(messages, add_generation_prompt, tokens=self._roles)
        return list(zip(self.encode_batch([text for text, _ in spans]), [role for _, role in spans]))

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
        missing = self.missing()
        extra = f", missing={missing}" if missing else ""
        return f"Tokenizer(vocab_size={self.vocab_size}, fingerprint={self.fingerprint[:12]}{extra})"


def chat_spans(messages: list[dict[str, str]], add_generation_prompt: bool = True,
               tokens: dict[str, str | None] | None = None) -> list[tuple[str, str]]:
    """chat_prompt's text in pieces, each (text, role): a message gives its opening role token as
    ("<|role|>", "marker") and its content with the closing token as ("content<|end|>", role);
    the generation prompt is one more marker. Joined, the texts are chat_prompt's; fine-tuning
    reads the roles to put the loss on the assistant's pieces only. The role tokens are special
    tokens, which the tokenizer splits on before anything else, so encoding the pieces one by one
    gives the ids of encoding the whole text."""
    marks = {**OWN_TOKENS, **{r: t for r, t in (tokens or {}).items() if r in CHAT_ROLES and t}}
    spans = []
    for i, m in enumerate(messages):
        role, content = m.get("role"), m.get("content")
        if role not in ROLES or not isinstance(content, str):
            raise ValueError(f"message {i} must be {{'role': one of {ROLES}, 'content': str}}, got {m!r}")
        spans += [(marks[role], "marker"), (f"{content}{marks['end_of_turn']}", role)]
    if add_generation_prompt:
        spans.append((marks["assistant"], "marker"))
    return spans


def chat_prompt(messages: list[dict[str, str]], add_generation_prompt: bool = True,
                tokens: dict[str, str | None] | None = None) -> str:
    """The text of a conversation in the role tokens: each message {"role", "content"} becomes
    "<|role|>content<|end|>", and add_generation_prompt opens the assistant's turn for the model
    to complete. Encoding the text maps each role token to its single id. The same layout is the
    chat_template of an exported Hugging Face checkpoint (model/hf.py). tokens: role -> token
    (Tokenizer.roles) to write other role tokens than ownlm's (Tokenizer.chat_prompt passes them)."""
    return "".join(text for text, _ in chat_spans(messages, add_generation_prompt, tokens))
