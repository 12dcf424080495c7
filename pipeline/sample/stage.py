"""The `sample` stage: build the bundled sample corpus (pipeline/sample/corpus.py) under the root."""
from __future__ import annotations

import platform
import subprocess
import sys

from evaluation.tasks import TASKS_DIR
from model.atomic import discard_dir, publish_dir, staging_dir
from pipeline.layout import Location
from pipeline.sample import corpus
from pipeline.stage import Context, Stage
from pipeline.storage import StoragePath, local_output, resolve


def build_sample(dest: StoragePath | str) -> dict:
    """Build the sample corpus at `dest` (idempotent) and return its `_SUCCESS` marker.

    A marker written by this Python and this builder version means the corpus is complete:
    it is returned as is. Otherwise the corpus is built in a temporary sibling folder and
    published in one step, so a killed build never leaves half a corpus behind.
    """
    dest = resolve(dest)
    marker = corpus.read_marker(dest)
    if marker is not None:
        return marker
    with local_output(dest) as out:  # the builder writes local files; a remote root gets them uploaded
        tmp = staging_dir(out)
        # -I: no PYTHON* variables, no user site, and not this folder on sys.path (where a module
        # of ours could shadow the standard library's); -S: no site-packages at all.
        proc = subprocess.run([sys.executable, "-I", "-S", corpus.__file__, str(tmp), str(TASKS_DIR / "pyfacts.jsonl")],
                              cwd=tmp, env={"LC_ALL": "C.UTF-8"}, capture_output=True, text=True)
        if proc.returncode != 0:
            discard_dir(tmp)
            raise RuntimeError(f"building the sample corpus in {tmp} failed:\n{proc.stderr[-3000:]}")
        publish_dir(tmp, out)
    return corpus.read_marker(dest)


def build(ctx: Context) -> dict:
    info = build_sample(ctx.layout.sample)
    print(f"   sample corpus at {ctx.layout.sample}", flush=True)
    return info


STAGE = Stage(
    name="sample",
    help="build the bundled sample corpus from this Python installation",
    action=build,
    sections=("data",),
    locations=(Location("sample", "sample", "the bundled sample corpus, built from this Python installation"),),
    outputs=(("sample", corpus.MARKER),),
    # The corpus is made from this interpreter's own files.
    fingerprint_inputs=lambda ctx: {"python": platform.python_version()},
    enabled=lambda cfg: cfg.data.sample,
)
