"""The Ray Serve application: `Api`, a FastAPI ingress that speaks OpenAI's HTTP API, in front
of `ModelServer`, the deployment whose replicas hold the model; the ingress calls it through a
DeploymentHandle. Each replica batches concurrent requests (`@serve.batch`): every choice of
every request is one batch item, streamed back step by step.

The ingress tokenizes, checks every limit and answers refusals in OpenAI's error shape, so a
bad request never reaches (or fails) a batch that other requests share.
"""
# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations (Request) at runtime.

import asyncio
import dataclasses
import hmac
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from ray import serve
from ray.serve.metrics import Counter, Histogram
from starlette.exceptions import HTTPException

from model.errors import MissingInput
from model.sampling import SamplingParams
from pipeline.config import ServeConfig
from pipeline.serve import responses
from pipeline.serve.engine import Sequence, merge
from pipeline.serve.protocol import (
    ApiError,
    ChatRequest,
    CompletionRequest,
    DetokenizeRequest,
    EmbeddingRequest,
    TokenizeRequest,
    parse,
    prompt_list,
)
from pipeline.storage import StoragePath, local_copy, resolve, worker_env

log = logging.getLogger("ray.serve")


def _default(name: str):
    """The `serve` config section's default for a setting: one source for both the CLI and a Serve
    config file (`app_builder`), which gives only the settings it changes."""
    return ServeConfig.model_fields[name].default


@dataclass(frozen=True)
class ServeSettings:
    """What both deployments need, from the `serve` config section and the checkpoint."""

    model_path: str
    model_name: str
    api_key: str | None = None
    max_batch_size: int = _default("max_batch_size")
    batch_wait_timeout_s: float = _default("batch_wait_timeout_s")
    max_tokens: int = _default("max_tokens")
    default_max_tokens: int = _default("default_max_tokens")
    max_n: int = _default("max_n")
    max_prompts: int = _default("max_prompts")
    cpus_per_replica: float = _default("cpus_per_replica")
    gpus_per_replica: float = _default("gpus_per_replica")
    replicas: int = _default("replicas")
    compile: bool = _default("compile")
    autoscale: tuple[int, int] | None = None


def build_app(settings: ServeSettings):
    """The bound Serve application (serve.run it)."""
    # Both deployments read the checkpoint; one at a URI is fetched with the storage variables set
    # here (endpoint, credentials), which replicas on other nodes would not have otherwise.
    env = {"env_vars": worker_env()} if worker_env() else {}
    model = serve.deployment(ModelServer).options(
        name="ModelServer", ray_actor_options={"num_cpus": settings.cpus_per_replica,
                                               "num_gpus": settings.gpus_per_replica, **_runtime_env(env)},
        max_ongoing_requests=max(16, 4 * settings.max_batch_size),
        **_scaling(settings)).bind(settings)
    return _api_deployment().options(name="Api", ray_actor_options={"num_cpus": 0, **_runtime_env(env)}).bind(
        model, settings)


def _runtime_env(env: dict) -> dict:
    return {"runtime_env": env} if env else {}


def app_builder(args: dict):
    """The application for a Serve config file (`serve run` / `serve deploy`): import_path
    `pipeline.serve.app:app_builder`, args the ServeSettings fields (model_path, model_name, ...)."""
    return build_app(ServeSettings(**{k: tuple(v) if k == "autoscale" and v else v for k, v in args.items()}))


def _scaling(settings: ServeSettings) -> dict:
    if settings.autoscale is None:
        return {"num_replicas": settings.replicas}
    low, high = settings.autoscale
    return {"autoscaling_config": {"min_replicas": low, "max_replicas": high,
                                   "target_ongoing_requests": settings.max_batch_size}}


# ---- the checkpoint, local or at a URI ----

def checkpoint_folder(model_path: str) -> Path:
    """The whole checkpoint as a local folder: `model_path` itself, or for a URI (s3://...) this
    node's copy (storage.local_copy), so that a replica on any node fetches the model itself."""
    return local_copy(_checkpoint(model_path))


def checkpoint_header(model_path: str) -> Path:
    """A local folder with the checkpoint's config and tokenizer, without its weights (what the
    ingress and the command's early check read)."""
    from model.checkpoint import CONFIG, TOKENIZER  # torch: only where a checkpoint is read

    return local_copy(_checkpoint(model_path), include=(CONFIG, TOKENIZER))


def _checkpoint(model_path: str) -> StoragePath:
    path = resolve(model_path)
    if not path.is_dir():
        raise MissingInput(f"no checkpoint folder at {model_path}")
    return path


# ---- the model deployment ----

class ModelServer:
    """One replica: the model, its tokenizer and the batching engine."""

    def __init__(self, settings: ServeSettings):
        import torch

        from model.checkpoint import load_model, load_tokenizer
        from pipeline.serve.engine import Engine

        torch.set_num_threads(max(1, int(settings.cpus_per_replica)))
        device = "cuda" if settings.gpus_per_replica > 0 and torch.cuda.is_available() else "cpu"
        folder = checkpoint_folder(settings.model_path)
        model, _ = load_model(folder, device=device)
        self.engine = Engine(model, load_tokenizer(folder), compile=settings.compile)
        for method in (self._generate_batch, self.embed, self.score):
            method.set_max_batch_size(settings.max_batch_size)
            method.set_batch_wait_timeout_s(settings.batch_wait_timeout_s)
        self.batch_sizes: dict[int, int] = {}
        self.batch_metric = Histogram("ownlm_batch_size", description="requests decoded together",
                                      boundaries=[1, 2, 4, 8, 16, 32, 64])
        self.token_metric = Counter("ownlm_generated_tokens", description="tokens generated")

    async def generate(self, seq: Sequence):
        """One choice's pieces as they are decoded, in a batch with whatever else is running.
        (An async generator of its own: Serve runs the plain function that @serve.batch makes
        of a generator as a sync method, in a thread, and refuses its async result.)"""
        if seq.stream:
            async for piece in self._generate_batch(seq):
                yield piece
            return
        yield merge([piece async for piece in self._generate_batch(seq) if piece is not None])

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)  # the settings replace both in __init__
    async def _generate_batch(self, seqs: list[Sequence]):
        """Batched and streamed: per step, one item per request (its Piece, None while its group
        waits), StopIteration once it has finished."""
        self._count(len(seqs))
        finished = [False] * len(seqs)
        for step in self.engine.generate(seqs):
            out = []
            for i, piece in enumerate(step):
                if finished[i]:
                    out.append(StopIteration)
                    continue
                out.append(piece)
                if piece is not None:
                    self.token_metric.inc(len(piece.tokens))
                    finished[i] = piece.finish_reason is not None
            yield out
            await asyncio.sleep(0)  # let the replica take in new requests between steps
        yield [StopIteration] * len(seqs)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)  # the settings replace both in __init__
    async def score(self, rows: list[tuple[list[int], int]]):
        self._count(len(rows))
        top_k = max(k for _, k in rows)
        scored = self.engine.score([ids for ids, _ in rows], top_k)
        return [_trim_top(s, k) for s, (_, k) in zip(scored, rows)]

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)  # the settings replace both in __init__
    async def embed(self, rows: list[list[int]]):
        self._count(len(rows))
        return self.engine.embed(rows)

    def _count(self, size: int) -> None:
        self.batch_sizes[size] = self.batch_sizes.get(size, 0) + 1
        self.batch_metric.observe(size)

    def stats(self) -> dict:
        """Batches formed so far, by size: {size: count}."""
        return dict(self.batch_sizes)


def _trim_top(scored: dict, k: int) -> dict:
    """A batch scores with its largest top-k; each request keeps its own k most likely."""
    tops = [None if t is None else dict(sorted(t.items(), key=lambda kv: -kv[1])[:k]) for t in scored["top_logprobs"]]
    return {**scored, "top_logprobs": tops}



# ---- the HTTP ingress ----

http = FastAPI(title="ownlm", description="An ownlm model behind OpenAI's API")


@http.exception_handler(ApiError)
async def _api_error(request: Request, e: ApiError):
    return JSONResponse(e.body(), status_code=e.status)


@http.exception_handler(HTTPException)
async def _http_error(request: Request, e: HTTPException):  # unknown paths, wrong methods
    code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code)
    return JSONResponse(ApiError(e.status_code, str(e.detail), code=code).body(), status_code=e.status_code)


@http.exception_handler(Exception)
async def _server_error(request: Request, e: Exception):  # a bug of ours: still OpenAI's shape, and logged
    log.exception("request failed")
    return JSONResponse(ApiError(500, f"internal error: {type(e).__name__}: {e}", type="server_error").body(),
                        status_code=500)


def _api_deployment():
    return serve.deployment(Api)


@serve.ingress(http)
class Api:
    """OpenAI's endpoints, and the tokenizer endpoints lm-eval's remote tokenizer calls."""

    def __init__(self, model, settings: ServeSettings):
        from model.checkpoint import load_config, load_tokenizer

        self.model, self.settings = model, settings
        header = checkpoint_header(settings.model_path)
        self.tok = load_tokenizer(header)
        self.window = load_config(header).max_seq_len
        self.vocab = self.tok.vocab_size
        self.created = responses.now()

    # -- checks shared by every endpoint --

    def _authorize(self, request: Request) -> None:
        key = self.settings.api_key
        if key is None:
            return
        given = request.headers.get("authorization", "")
        if not (given.startswith("Bearer ") and hmac.compare_digest(given[7:].encode(), key.encode())):
            raise ApiError(401, "a valid API key is required: send the header `Authorization: Bearer KEY`",
                           code="invalid_api_key")

    def _check_model(self, name: str) -> None:
        if name != self.settings.model_name:
            raise ApiError(404, f"the model {name!r} does not exist; this server serves {self.settings.model_name!r}",
                           param="model", code="model_not_found")

    def _ids(self, prompt, are_ids: bool, param: str) -> list[int]:
        if not are_ids:
            return self.tok.encode(prompt) or [self.tok.eot_id]  # an empty prompt starts a document
        if not prompt:
            raise ApiError(400, f"{param}: a token list must not be empty", param=param)
        bad = [t for t in prompt if not 0 <= t < self.vocab]
        if bad:
            raise ApiError(400, f"{param}: token id {bad[0]} is outside the vocabulary (0..{self.vocab - 1})",
                           param=param)
        return list(prompt)

    def _limits(self, req, n_prompts: int, max_tokens: int) -> None:
        s = self.settings
        if max_tokens > s.max_tokens:
            raise ApiError(400, f"max_tokens is {max_tokens}; this server allows at most {s.max_tokens}",
                           param="max_tokens")
        if req.n > s.max_n:
            raise ApiError(400, f"n is {req.n}; this server allows at most {s.max_n}", param="n")
        if n_prompts > s.max_prompts:
            raise ApiError(400, f"{n_prompts} prompts in one request; this server allows at most {s.max_prompts}",
                           param="prompt")
        if req.frequency_penalty or req.presence_penalty:
            raise ApiError(400, "frequency_penalty and presence_penalty are not supported (leave them at 0)",
                           param="frequency_penalty" if req.frequency_penalty else "presence_penalty")
        if len(req.stop_strings()) > 4:
            raise ApiError(400, "at most 4 stop sequences", param="stop")

    def _fits(self, ids: list[int], max_tokens: int) -> None:
        if len(ids) + max_tokens > self.window:
            raise ApiError(400, f"this model's context is {self.window} tokens; the prompt has {len(ids)} and "
                                f"max_tokens is {max_tokens}: shorten the prompt or lower max_tokens",
                           param="prompt", code="context_length_exceeded")

    def _sequences(self, req, prompts: list[list[int]], max_tokens: int, stop_ids: list[int],
                   logprobs: int | None) -> list[Sequence]:
        seqs = []
        for ids in prompts:
            for j in range(req.n):  # the choices of one prompt draw differently, each repeatably with a seed
                params = SamplingParams(max_new_tokens=max_tokens, temperature=req.temperature,
                                        top_p=None if req.top_p >= 1 else req.top_p,
                                        seed=None if req.seed is None else req.seed + j)
                seqs.append(Sequence(ids, max_tokens, params, req.stop_strings(), stop_ids, logprobs))
        return seqs

    def _stream(self, seq: Sequence, stream: bool = True):
        return self.model.options(stream=True).generate.remote(dataclasses.replace(seq, stream=stream))

    # -- endpoints --

    @http.get("/health")
    async def health(self):
        return {"status": "ok"}

    @http.get("/v1/models")
    async def list_models(self, request: Request):
        self._authorize(request)
        return responses.models(self.settings.model_name, self.window, self.created)

    @http.get("/v1/models/{name}")
    async def get_model(self, name: str, request: Request):
        self._authorize(request)
        self._check_model(name)
        return responses.model_card(name, self.window, self.created)

    @http.post("/v1/completions")
    async def completions(self, request: Request):
        self._authorize(request)
        req: CompletionRequest = parse(await request.body(), CompletionRequest)
        self._check_model(req.model)
        prompts, are_ids = prompt_list(req.prompt)
        max_tokens = self.settings.default_max_tokens if req.max_tokens is None else req.max_tokens
        self._limits(req, len(prompts), max_tokens)
        ids = [self._ids(p, are_ids, "prompt") for p in prompts]
        for row in ids:
            self._fits(row, max_tokens)
        seqs = self._sequences(req, ids, max_tokens, [self.tok.eot_id], req.logprobs)
        echoed = [self.tok.decode(row) if req.echo else "" for row in ids]
        scored = [None] * len(ids)
        if req.echo and req.logprobs is not None:  # the prompt's own tokens, for log-likelihoods
            scored = await asyncio.gather(*(self.model.score.remote((row, req.logprobs)) for row in ids))
        choices = [responses.ChoiceText(i, echoed[i // req.n], scored[i // req.n], req.logprobs is not None)
                   for i in range(len(seqs))]
        rid, created = responses.request_id("cmpl"), responses.now()
        prompt_tokens = sum(len(r) for r in ids)
        start = time.perf_counter()
        if req.stream:
            return self._sse(self._completion_events(rid, created, req, seqs, choices, prompt_tokens, start))
        await asyncio.gather(*(self._collect(seq, c) for seq, c in zip(seqs, choices)))
        self._log(rid, prompt_tokens, choices, start)
        return responses.completion(rid, req.model, created, choices, prompt_tokens)

    @http.post("/v1/chat/completions")
    async def chat_completions(self, request: Request):
        self._authorize(request)
        req: ChatRequest = parse(await request.body(), ChatRequest)
        self._check_model(req.model)
        if req.logprobs:
            raise ApiError(400, "logprobs are not supported for chat completions (use /v1/completions)",
                           param="logprobs")
        max_tokens = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
        max_tokens = min(self.settings.max_tokens, self.window - 1) if max_tokens is None else max_tokens
        self._limits(req, 1, max_tokens)
        try:
            ids = self.tok.encode(self.tok.chat_prompt([m.model_dump(include={"role", "content"})
                                                        for m in req.messages]))
        except ValueError as e:  # MissingSpecialTokens: the tokenizer has no chat roles
            raise ApiError(400, f"this model cannot chat: {e}", param="messages") from None
        if req.max_tokens is None and req.max_completion_tokens is None:  # as long as the window allows
            max_tokens = max(1, min(max_tokens, self.window - len(ids)))
        self._fits(ids, max_tokens)
        stops = [self.tok.eot_id] + ([self.tok.end_of_turn_id] if self.tok.end_of_turn_id is not None else [])
        seqs = self._sequences(req, [ids], max_tokens, stops, None)
        choices = [responses.ChoiceText(i) for i in range(len(seqs))]
        rid, created = responses.request_id("chatcmpl"), responses.now()
        start = time.perf_counter()
        if req.stream:
            return self._sse(self._chat_events(rid, created, req, seqs, choices, len(ids), start))
        await asyncio.gather(*(self._collect(seq, c) for seq, c in zip(seqs, choices)))
        self._log(rid, len(ids), choices, start)
        return responses.chat_completion(rid, req.model, created, choices, len(ids))

    @http.post("/v1/embeddings")
    async def embeddings(self, request: Request):
        self._authorize(request)
        req: EmbeddingRequest = parse(await request.body(), EmbeddingRequest)
        self._check_model(req.model)
        if req.dimensions is not None:
            raise ApiError(400, "dimensions is not supported: the vectors have the model's width", param="dimensions")
        inputs, are_ids = prompt_list(req.input)
        if len(inputs) > self.settings.max_prompts:
            raise ApiError(400, f"{len(inputs)} inputs; this server allows at most {self.settings.max_prompts}",
                           param="input")
        ids = [self._ids(x, are_ids, "input") for x in inputs]
        for row in ids:
            self._fits(row, 0)
        vectors = await asyncio.gather(*(self.model.embed.remote(row) for row in ids))
        return responses.embeddings(req.model, vectors, sum(len(r) for r in ids), req.encoding_format)

    @http.post("/tokenize")
    async def tokenize(self, request: Request):
        self._authorize(request)
        req: TokenizeRequest = parse(await request.body(), TokenizeRequest)
        if req.model is not None:
            self._check_model(req.model)
        tokens = self.tok.encode(req.prompt)
        return {"tokens": tokens, "count": len(tokens), "max_model_len": self.window}

    @http.post("/detokenize")
    async def detokenize(self, request: Request):
        self._authorize(request)
        req: DetokenizeRequest = parse(await request.body(), DetokenizeRequest)
        if req.model is not None:
            self._check_model(req.model)
        return {"prompt": self.tok.decode(self._ids(req.tokens, True, "tokens"))}

    @http.get("/tokenizer_info")
    async def tokenizer_info(self, request: Request):
        from model.hf import chat_template

        self._authorize(request)
        roles = self.tok.roles
        return {"eos_token": roles.get("eot"), "bos_token": roles.get("bos"), "pad_token": roles.get("pad"),
                "chat_template": chat_template(roles), "model_max_length": self.window,
                "tokenizer_class": "ownlm"}

    # -- generation plumbing --

    async def _collect(self, seq: Sequence, choice: responses.ChoiceText) -> None:
        async for piece in self._stream(seq, stream=False):
            if piece is not None:
                choice.add(piece)

    def _sse(self, events):
        return StreamingResponse(events, media_type="text/event-stream")

    async def _merged(self, seqs: list[Sequence]):
        """(choice index, piece) as they arrive from every choice's stream."""
        queue: asyncio.Queue = asyncio.Queue()

        async def pump(i, seq):
            try:
                async for piece in self._stream(seq):
                    if piece is not None:
                        await queue.put((i, piece))
            finally:
                await queue.put((i, None))

        tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(seqs)]
        open_streams = len(tasks)
        try:
            while open_streams:
                i, piece = await queue.get()
                if piece is None:
                    open_streams -= 1
                    continue
                yield i, piece
        finally:
            for t in tasks:
                t.cancel()

    async def _completion_events(self, rid, created, req, seqs, choices, prompt_tokens, start):
        for c in choices:
            if c.text:  # echo: the prompt comes first
                yield responses.sse(responses.completion_chunk(rid, req.model, created, c.index, c.text, c.logprobs))
        async for i, piece in self._merged(seqs):
            logprobs = choices[i].add(piece)
            if piece.text or piece.finish_reason or logprobs:
                yield responses.sse(responses.completion_chunk(rid, req.model, created, i, piece.text, logprobs,
                                                               piece.finish_reason))
        if req.stream_options and req.stream_options.include_usage:
            yield responses.sse(responses.usage_chunk(rid, req.model, created, "text_completion", prompt_tokens,
                                                      sum(c.tokens for c in choices)))
        yield responses.sse("[DONE]")
        self._log(rid, prompt_tokens, choices, start)

    async def _chat_events(self, rid, created, req, seqs, choices, prompt_tokens, start):
        for c in choices:
            yield responses.sse(responses.chat_chunk(rid, req.model, created, c.index,
                                                     {"role": "assistant", "content": ""}))
        async for i, piece in self._merged(seqs):
            choices[i].add(piece)
            if piece.text:
                yield responses.sse(responses.chat_chunk(rid, req.model, created, i, {"content": piece.text}))
            if piece.finish_reason:
                yield responses.sse(responses.chat_chunk(rid, req.model, created, i, {}, piece.finish_reason))
        if req.stream_options and req.stream_options.include_usage:
            yield responses.sse(responses.usage_chunk(rid, req.model, created, "chat.completion.chunk",
                                                      prompt_tokens, sum(c.tokens for c in choices)))
        yield responses.sse("[DONE]")
        self._log(rid, prompt_tokens, choices, start)

    def _log(self, rid: str, prompt_tokens: int, choices, start: float) -> None:
        log.info("%s tokens_in=%d tokens_out=%d latency_ms=%.1f", rid, prompt_tokens,
                 sum(c.tokens for c in choices), 1000 * (time.perf_counter() - start))
