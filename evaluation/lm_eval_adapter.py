"""ownlm models inside EleutherAI's lm-evaluation-harness.

`OwnLM` is an lm-eval model class, registered as "ownlm": importing this module is enough for
`lm_eval --model ownlm --model_args path=CKPT` or `simple_evaluate(model="ownlm", ...)`, and
`OwnLM.from_model(model, tokenizer)` wraps a model already in memory (the pipeline evaluates
right after training without reloading).

It follows lm-eval's own Hugging Face backend (`lm_eval.models.huggingface.HFLM`) so that
scores compare across backends:
- tokenization: `TemplateLM` moves the context's trailing spaces onto the continuation and
  splits the encoding of context + continuation at the context's length; an empty context
  is the end-of-text token;
- loglikelihood: requests run longest first in right-padded batches, context + continuation
  are cut from the left to max_length + 1 tokens, and results come back in request order;
- loglikelihood_rolling: disjoint windows of max_length tokens
  (`utils.get_rolling_token_windows` + `utils.make_disjoint_window`);
- generate_until: `model.generate.generate_stream` with the KV cache, the prompt cut from the
  left to leave room for max_gen_toks; decoding stops at end-of-text or as soon as an `until`
  string appears, and the text is cut before it.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from lm_eval import utils as lm_utils
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.models.utils import normalize_gen_kwargs, postprocess_generated_text
from tqdm import tqdm

from model.checkpoint import load_model, load_tokenizer
from model.generate import generate_stream
from model.sampling import SamplingParams

log = logging.getLogger(__name__)

# Generation kwargs lm-eval tasks commonly pass that have no meaning for greedy/top-k/top-p
# sampling here; anything else unknown is warned about once.
_IGNORED_GEN_KWARGS = {"num_beams", "repetition_penalty", "use_cache"}


def _torch_dtype(dtype):
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    name = str(dtype).removeprefix("torch.")
    value = getattr(torch, name, None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"dtype {dtype!r} is not a torch dtype (e.g. float32, bfloat16)")
    return value


def _available_device(device: str | None) -> str:
    """lm-eval's command line asks for "cuda" by default; like its `hf` backend, fall back to the
    CPU (with a warning) when no GPU is there. None picks the GPU when there is one."""
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        log.warning("device %r is not available; using the CPU", device)
        return "cpu"
    return str(device)


@register_model("ownlm")
class OwnLM(TemplateLM):
    """An ownlm checkpoint (or in-memory Transformer + Tokenizer) as an lm-eval model."""

    def __init__(
        self,
        path: str | Path | None = None,
        batch_size: int | str = 16,
        device: str | None = "cpu",
        max_length: int | str | None = None,
        dtype: str | None = None,
        max_gen_toks: int | str = 256,
        seed: int | str | None = None,
        max_batch_size: int | None = None,  # passed by lm-eval's CLI; batches here are fixed
        *,
        model=None,
        tokenizer=None,
    ):
        super().__init__()
        device = _available_device(device)
        if model is None:
            if path is None:
                raise ValueError("OwnLM needs a checkpoint: OwnLM(path=CKPT) or OwnLM.from_model(model, tokenizer)")
            model, _ = load_model(path, device=device, dtype=_torch_dtype(dtype))
            tokenizer = load_tokenizer(path)
        elif tokenizer is None:
            raise ValueError("OwnLM(model=...) also needs tokenizer=...")
        if str(batch_size).startswith("auto"):
            raise ValueError("OwnLM takes a fixed batch_size (an integer), not 'auto'")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self._device = torch.device(device)
        self.batch_size = int(batch_size)
        self.max_gen_toks = int(max_gen_toks)
        self.seed = None if seed is None else int(seed)
        model_max = model.cfg.max_seq_len
        self.max_length = model_max if max_length is None else int(max_length)
        if not 1 < self.max_length <= model_max:
            raise ValueError(f"max_length={self.max_length} must be in 2..{model_max} (the model's max_seq_len)")
        self.pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else self.eot_token_id
        self._warned: set[str] = set()

    @classmethod
    def from_model(cls, model, tokenizer, batch_size: int = 16, max_length: int | None = None,
                   max_gen_toks: int = 256, seed: int | None = None) -> "OwnLM":
        """Wrap a model already in memory; it runs where its weights are (and is put in eval mode)."""
        device = next(model.parameters()).device
        return cls(model=model, tokenizer=tokenizer, batch_size=batch_size, device=str(device),
                   max_length=max_length, max_gen_toks=max_gen_toks, seed=seed)

    # ---- what TemplateLM needs ----

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eot_id

    @property
    def tokenizer_name(self) -> str:
        return f"ownlm-{self.tokenizer.fingerprint[:16]}"  # keys lm-eval's request cache

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        return list(self.tokenizer.encode(string))

    def tok_decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(list(tokens))

    def get_model_info(self) -> dict:
        return {"model_num_parameters": sum(p.numel() for p in self.model.parameters()),
                "model_dtype": str(next(self.model.parameters()).dtype),
                "max_length": self.max_length}

    # ---- scoring ----

    @torch.inference_mode()
    def _hidden(self, rows: list[list[int]]) -> torch.Tensor:
        """Right-padded forward pass to the final normed hidden states: (B, T, D). Causal
        attention keeps padding on the right from touching any real position, so no attention
        mask is needed."""
        width = max(len(r) for r in rows)
        batch = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        for i, r in enumerate(rows):
            batch[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        return self.model(batch.to(self.device), return_hidden=True)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        """requests: ((context, continuation) | None, context_ids, continuation_ids) triples."""
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        # Longest first: the first batch is the biggest (an OOM shows at once), and batches
        # of similar lengths waste little padding.
        order = sorted(range(len(requests)), key=lambda i: -(len(requests[i][1]) + len(requests[i][2])))
        batches = [order[s : s + self.batch_size] for s in range(0, len(order), self.batch_size)]
        bar = tqdm(total=len(requests), disable=disable_tqdm, desc="ownlm loglikelihood", unit="req")
        for batch in batches:
            inputs, conts = [], []
            for i in batch:
                _, ctx, cont = requests[i]
                if not cont:
                    raise ValueError(f"request {requests[i][0]!r} has an empty continuation")
                if len(cont) > self.max_length:
                    raise ValueError(f"continuation of {len(cont)} tokens exceeds max_length={self.max_length}")
                # Keep the last max_length + 1 tokens: the model reads all but the last one.
                window = (list(ctx) + list(cont))[-(self.max_length + 1):]
                inputs.append(window[:-1])
                conts.append(list(cont))
            # Position p predicts token p + 1: each continuation is predicted by its row's last
            # n inputs. Only those positions go through the output head (the vocabulary-sized
            # matmul), all rows at once.
            hidden = self._hidden(inputs)  # (B, T, D)
            owner = [row for row, c in enumerate(conts) for _ in c]
            positions = [p for row, c in enumerate(conts) for p in range(len(inputs[row]) - len(c), len(inputs[row]))]
            with torch.inference_mode():
                logprobs = torch.log_softmax(self.model.output(hidden[owner, positions]).float(), dim=-1)  # (N, V)
                target = torch.tensor([t for c in conts for t in c], device=logprobs.device)
                owner_t = torch.tensor(owner, device=logprobs.device)
                picked = logprobs.gather(-1, target[:, None])[:, 0]  # (N,)
                misses = (logprobs.argmax(dim=-1) != target).float()
                scores = torch.zeros(len(batch), device=logprobs.device).index_add_(0, owner_t, picked)
                missed = torch.zeros(len(batch), device=logprobs.device).index_add_(0, owner_t, misses)
            for row, (score, miss) in enumerate(zip(scores.tolist(), missed.tolist())):
                i = batch[row]
                results[i] = (score, miss == 0)
                if requests[i][0] is not None:
                    self.cache_hook.add_partial("loglikelihood", requests[i][0], results[i])
            bar.update(len(batch))
        bar.close()
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """Log-likelihood of each whole text, scored in disjoint windows of max_length tokens."""
        windows, owner = [], []
        for r, (text,) in enumerate(req.args for req in requests):
            pairs = lm_utils.get_rolling_token_windows(
                token_list=self.tok_encode(text), prefix_token=self.prefix_token_id,
                max_seq_len=self.max_length, context_len=1)
            for ctx, pred in map(lm_utils.make_disjoint_window, pairs):
                windows.append((None, ctx, pred))
                owner.append(r)
        totals = [0.0] * len(requests)
        for r, (score, _) in zip(owner, self._loglikelihood_tokens(windows, disable_tqdm=disable_tqdm)):
            totals[r] += score
        for req, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
        return totals

    # ---- generation ----

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        out = []
        for req in tqdm(requests, disable=disable_tqdm, desc="ownlm generate_until", unit="req"):
            context, gen_kwargs = req.args
            text = self._generate_one(context, dict(gen_kwargs or {}))
            out.append(text)
            self.cache_hook.add_partial("generate_until", (context, gen_kwargs), text)
        return out

    def _generate_one(self, context: str, gen_kwargs: dict) -> str:
        """Decode with the KV cache until end-of-text, an `until` string, or max_gen_toks;
        the text returned stops before the first `until` string."""
        kw = normalize_gen_kwargs(gen_kwargs, self.max_gen_toks)
        until = [s for s in kw.pop("until") if s]
        max_new = min(kw.pop("max_gen_toks"), self.max_length - 1)
        do_sample, temperature = kw.pop("do_sample"), float(kw.pop("temperature", 0.0))
        if not do_sample:
            temperature = 0.0
        elif temperature == 0.0:
            temperature = 1.0  # do_sample without a temperature: sample the plain softmax
        top_k, top_p = kw.pop("top_k", None), kw.pop("top_p", None)
        self._warn_unused(kw)
        # Leave room for max_new tokens inside the model's window (HFLM does the same).
        prompt = self.tok_encode(context)[-(self.max_length - max_new):] or [self.prefix_token_id]
        params = SamplingParams(max_new_tokens=max_new, temperature=temperature, top_k=top_k, top_p=top_p,
                                seed=self.seed)
        ids: list[int] = []
        for token in generate_stream(self.model, prompt, params, eos_id=self.eot_token_id, use_cache=True):
            if token == self.eot_token_id:
                break
            ids.append(token)
            if until and any(s in self.tok_decode(ids) for s in until):
                break  # stop paying for tokens the answer will not keep
        return postprocess_generated_text(self.tok_decode(ids), stop=until, think_end_token=None)

    def _warn_unused(self, kwargs: dict) -> None:
        for key in sorted(set(kwargs) - _IGNORED_GEN_KWARGS - self._warned):
            log.warning("ownlm generate_until ignores the generation kwarg %r", key)
            self._warned.add(key)
