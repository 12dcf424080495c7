"""What clients send, in OpenAI's request shapes, parsed into typed requests; and OpenAI's error
shape for every refusal (`{"error": {"message", "type", "param", "code"}}`).

Unknown fields are refused rather than ignored (a typo must not silently change the sampling),
except the few that clients send at their no-op defaults (`user`, zero penalties).
"""
from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class ApiError(Exception):
    """A request the server refuses: HTTP status plus OpenAI's error fields."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class Request(BaseModel):
    # strict: "10" is not an int and 1 is not a bool; an int is still a float.
    model_config = ConfigDict(extra="forbid", strict=True)

    model: str
    user: str | None = None
    """Accepted for the clients that send it; not used."""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    include_usage: bool = False


class Sampling(Request):
    max_tokens: int | None = Field(default=None, ge=0)
    temperature: float = Field(default=1.0, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    n: int = Field(default=1, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0

    def stop_strings(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return [s for s in stops if s]


class CompletionRequest(Sampling):
    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool = False
    logprobs: int | None = Field(default=None, ge=0, le=20)
    """Per token, the log-probability of the chosen token and of the `logprobs` most likely ones."""


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    role: Literal["system", "user", "assistant"]
    content: str
    name: str | None = None


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=0)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)


class EmbeddingRequest(Request):
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None


class TokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    prompt: str
    add_special_tokens: bool = True
    """ownlm's tokenizers add no special tokens to plain text either way."""
    model: str | None = None


class DetokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    tokens: list[int]
    model: str | None = None


def parse(raw: bytes, kind: type[BaseModel]):
    """A request body as `kind`, or an ApiError (400) naming the first bad field."""
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ApiError(400, f"the request body is not valid JSON: {e}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object")
    try:
        return kind.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        param = ".".join(str(p) for p in first["loc"] if not isinstance(p, int) or p < 0) or None
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'body'}: {err['msg']}" for err in e.errors()[:5])
        raise ApiError(400, problems, param=param.split(".")[0] if param else None, code="invalid_value") from None


def prompt_list(prompt) -> tuple[list, bool]:
    """OpenAI's four prompt forms as a list of prompts (str or list of ids); True when they are ids."""
    if isinstance(prompt, str):
        return [prompt], False
    if not prompt:
        raise ApiError(400, "prompt must not be empty", param="prompt")
    if isinstance(prompt[0], int):
        return [prompt], True
    if isinstance(prompt[0], str):
        return list(prompt), False
    return list(prompt), True
