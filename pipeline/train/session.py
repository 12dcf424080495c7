"""What the training loop needs from whatever runs it: who it is, where to resume, where to report.

`RaySession` is the real one, on a Ray Train worker. `LocalSession` runs the same loop in
one plain process (world size 1, no process group), or as one of `world` processes on this
machine in a gloo process group (`spawn_local`), keeping checkpoints in a folder: the unit
tests drive the loop's logic through it without starting Ray, with 1 or 2 workers.
"""
from __future__ import annotations

import contextlib
import shutil
import socket
from pathlib import Path
from typing import Iterator

import torch


class RaySession:
    def __init__(self):
        import ray.train
        import ray.train.torch

        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        self.device = ray.train.torch.get_device()

    @contextlib.contextmanager
    def resume_dir(self) -> Iterator[Path | None]:
        """Ray Train's latest checkpoint (after a restart, or a rerun of the same run name)."""
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            yield None
            return
        with checkpoint.as_directory() as path:
            yield Path(path)

    def report(self, metrics: dict, checkpoint_dir: Path | None, commit: bool = False) -> None:
        """Every worker calls (Ray Train V2 expects all of them); the files of every worker's
        checkpoint_dir are uploaded into one checkpoint folder.

        commit (every rank, on a checkpoint round): return only once Ray Train's controller has
        registered this report. `ray.train.report` returns as soon as the files are on storage
        and the report sits in this worker's result queue; the controller collects the queues
        only when it polls the workers (every RAY_TRAIN_HEALTH_CHECK_INTERVAL_S, 2 s), and only
        a report that every rank's queue delivered becomes the checkpoint a restart resumes
        from. A worker that died before that poll took its report with it: the checkpoint
        stayed on storage, unknown to Ray Train, and the restart went back to the one before
        (or to step 0). Waiting for the commit costs up to one poll interval per checkpoint and
        makes every checkpoint that training has moved past the one a restart resumes from."""
        import ray.train

        checkpoint = ray.train.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
        ray.train.report(metrics, checkpoint=checkpoint)
        if commit:
            ray.train.get_all_reported_checkpoints(consistency_mode=ray.train.CheckpointConsistencyMode.COMMITTED)

    def where(self) -> tuple[str, str]:
        """(Ray node id, host name) of this worker."""
        import ray

        return ray.get_runtime_context().get_node_id(), socket.gethostname()


class LocalSession:
    """One worker of a run on this machine; checkpoint i is copied to <folder>/checkpoint_<i>.

    rank/world: this process's place in an initialised process group (spawn_local); every rank's
    checkpoint files go into the same folder, as Ray Train uploads them."""

    def __init__(self, folder: str | Path, device: str = "cpu", rank: int = 0, world: int = 1):
        self.folder = Path(folder)
        self.device = torch.device(device)
        self.rank, self.world = rank, world
        self.reports: list[tuple[dict, Path | None]] = []
        self._next = len(self.checkpoints())

    def checkpoints(self) -> list[Path]:
        return sorted(self.folder.glob("checkpoint_*"), key=lambda p: int(p.name.split("_")[1]))

    @contextlib.contextmanager
    def resume_dir(self) -> Iterator[Path | None]:
        found = self.checkpoints()
        yield found[-1] if found else None

    def report(self, metrics: dict, checkpoint_dir: Path | None, commit: bool = False) -> None:
        kept = None
        if checkpoint_dir is not None or commit:
            kept = self.folder / f"checkpoint_{self._next}"
            self._next += 1
        if checkpoint_dir is not None:
            shutil.copytree(checkpoint_dir, kept, dirs_exist_ok=True)
        if commit and self.world > 1:  # the checkpoint is whole once every rank has copied its part
            torch.distributed.barrier()
        self.reports.append((dict(metrics), kept))

    def where(self) -> tuple[str, str]:
        return "local", socket.gethostname()


def spawn_local(fn, world: int, *args) -> None:
    """Run fn(rank, world, *args) in `world` fresh processes on this machine, joined in one gloo
    process group (127.0.0.1, a free port); raises if any of them fails. fn must be importable
    (a module-level function): the processes are spawned, not forked."""
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(_run_in_group, args=(fn, world, port, args), nprocs=world, start_method="spawn")


def _run_in_group(rank: int, fn, world: int, port: int, args: tuple) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        fn(rank, world, *args)
    finally:
        dist.destroy_process_group()
