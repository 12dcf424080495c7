"""`ownlm finetune` on Ray Train, end to end: a small pretrained model (tests/pipeline/finetune_base.py:
a `debug` model trained briefly on structured text) fine-tuned on a labelled task built here
(support-ticket routing, four labels, other filler words in the test file) scores well above its
base and above chance on the task metric, fully (two DDP workers) and with LoRA; the LoRA run also
loses its worker, resumes from its checkpoint, keeps the base untouched and lowers the validation
loss."""
import numpy as np
import pytest
import torch

from evaluation.task_metric import evaluate_task_file
from model import lora
from model.checkpoint import ADAPTER, load_model, load_tokenizer, read_metadata
from model.objectives import sft_terms
from pipeline.config import load_config
from pipeline.finetune.data import IDS, MASK, SEGMENT, ExampleSplit
from pipeline.finetune.launch import run_finetune
from tests.pipeline.finetune_base import pretrain_base
from tests.pipeline.finetune_task import TEMPLATE, write_task
from tests.pipeline.test_train_loop import SEQ_LEN

CHANCE = 0.25
SETTINGS = ["model.preset=debug", f"tokenize.seq_len={SEQ_LEN}", "tracking.enabled=false", "finetune.seq_len=64",
            "finetune.max_steps=200", "finetune.batch_size=8", "finetune.eval_every=25", "finetune.checkpoint_every=25",
            "train.max_failures=1"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A debug-sized model pretrained briefly on text where context matters (in this process)."""
    return pretrain_base(tmp_path_factory.mktemp("ft-base"))


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return write_task(tmp_path_factory.mktemp("ft-task"))


@pytest.fixture(scope="module")
def base_acc(base, task):
    return accuracy(base, task)


def finetune(root, base, train_file, method, *settings):
    cfg = load_config(None, SETTINGS + [f"finetune.data={train_file}", f"finetune.method={method}", *settings],
                      values={"finetune.template": TEMPLATE}, root=str(root))
    out = root / "finetuned"
    metrics = run_finetune(cfg, base, out, root / "data", root / "runs", run_name=f"ft-{method}")
    return metrics, out


@pytest.fixture(scope="module")
def full(ray_session, base, task, tmp_path_factory):
    return finetune(tmp_path_factory.mktemp("ft-full"), base, task[0], "full", "finetune.lr=1e-2",
                    "train.num_workers=2", "finetune.batch_size=4")


@pytest.fixture(scope="module")
def with_lora(ray_session, base, task, tmp_path_factory, monkeypatch_module):
    """LoRA on every linear layer: on this base, q and v alone reach less and depend more on the lr
    (docs/finetuning.md has the numbers)."""
    root = tmp_path_factory.mktemp("ft-lora")
    marker = root / "killed"
    monkeypatch_module.setenv("OWNLM_FAULT_KILL_WORKER", f"0:30:{marker}")  # the last checkpoint was at 25
    result = finetune(root, base, task[0], "lora", "finetune.lr=2e-2", "finetune.lora_targets=[all]",
                      "train.num_workers=1")
    return (*result, marker)


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_full_fine_tuning_beats_the_base_and_chance(full, base, task, base_acc):
    metrics, out = full
    assert metrics["final/step"] == 200 and metrics["finetune/train_examples"] > 200
    acc = accuracy(out, task)
    print(f"base {base_acc}, full {acc}")  # shown by pytest -rP
    assert acc["task/tickets_test/acc"] > max(base_acc["task/tickets_test/acc"], CHANCE) + 0.1
    assert acc["task/tickets_test/exact_match"] > base_acc["task/tickets_test/exact_match"] + 0.1


def accuracy(model_dir, task) -> dict:
    model, _ = load_model(model_dir)
    return evaluate_task_file(model, load_tokenizer(model_dir), task[1], template=TEMPLATE)["metrics"]


def test_lora_fine_tuning_beats_the_base_and_chance(with_lora, task, base_acc):
    acc = accuracy(with_lora[1], task)
    print(f"base {base_acc}, LoRA {acc}")  # shown by pytest -rP
    assert acc["task/tickets_test/acc"] > max(base_acc["task/tickets_test/acc"], CHANCE) + 0.1


def test_lora_resumes_keeps_only_the_adapters_and_lowers_the_validation_loss(with_lora, base):
    metrics, out, marker = with_lora
    assert marker.read_text().startswith("rank 0 killed itself after step 30")
    assert metrics["final/step"] == 200
    meta = read_metadata(out)
    assert meta["lora"]["base"] == str(base.resolve()) and (out / ADAPTER).is_file()
    model, _ = load_model(out)  # the base, with the adapters applied
    assert lora.lora_spec(model) is not None and lora.trainable_fraction(model) < 0.5
    base_model, _ = load_model(base)
    for k, v in lora.base_state_dict(model).items():  # the base weights did not move
        assert (v == base_model.state_dict()[k]).all(), k
    val_split = ExampleSplit(out.parent / "data", "val")
    val = torch.as_tensor(val_split.rows(np.arange(len(val_split))))
    with torch.no_grad():
        before = sft_terms(base_model, val[:, IDS], val[:, MASK], val[:, SEGMENT])
    assert metrics["val/loss"] < 0.9 * (before[0] / before[1]).item()
