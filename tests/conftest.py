"""Shared fixtures: one Ray instance for the whole test session (Ray's own `ray_start_4_cpus` pattern)."""
from __future__ import annotations

import os

import pytest

from tests.s3server import s3_server  # noqa: F401  (a real S3-compatible server, for the storage tests)

# Keep Ray quiet and light on a 2-core CI machine.
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray instance shared by every integration test.

    4 logical CPUs on any machine: two 1-CPU train workers plus room for Ray Data tasks
    (with exactly 2 on a 2-core box, data ingest beside 2 workers waits forever).
    """
    import ray

    if not ray.is_initialized():
        # The dashboard serves the state API that Ray Train's controller polls.
        from pipeline.raysession import tune_ray_data_for_local_files

        tune_ray_data_for_local_files()  # as the CLI's own local instance
        ray.init(num_cpus=4, log_to_driver=False, configure_logging=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    yield ray
    ray.shutdown()
