"""Worker failures in one line (pipeline/train/failures.py), without starting Ray: the errors are built
as Ray Train hands them to its controller's callbacks and to the driver."""
import io
import logging
import re

from ray.exceptions import RayActorError
from ray.train import WorkerGroupError
from ray.train.v2._internal.exceptions import WorkerHealthCheckFailedError

from pipeline.train import failures

# what Ray Train 2.60 says about a worker whose process vanished (trimmed)
HEALTH_CHECK = """A worker health check failed.
Worker info: Worker(
  actor=Actor(RayTrainWorker, a837b3f3f72462769b35fc9d01000000),
  metadata=ActorMetadata(
    hostname='gpu-7',
    node_id='ad250c232af141dfe9127c0c949f84bb5b3849c8774f660dc3418e99',
    node_ip='10.0.0.7',
    pid=15775,
  ),
)"""
DIED = """The actor died unexpectedly before finishing this task.
\tclass_name: RayTrainWorker
\tpid: 15775
\tip: 10.0.0.7
The actor is dead because its worker process has died. Worker exit type: SYSTEM_ERROR Worker exit detail: Worker \
unexpectedly exits with a connection error code 2. End of file."""


def lost_worker(text=DIED, preempted=False):
    return WorkerHealthCheckFailedError(HEALTH_CHECK, RayActorError(error_msg=text, preempted=preempted))


def test_a_lost_worker_is_named_with_its_process_and_node_and_the_survivors_errors_are_left_out():
    gloo = RuntimeError("[gloo/transport/tcp/pair.cc:537] Read error: Connection reset by peer")
    assert failures.describe({1: gloo, 0: lost_worker()}) == (
        "worker 0 (pid 15775 on gpu-7/10.0.0.7) lost: its process was killed (SIGKILL, the OOM killer) or crashed")
    assert failures.describe({0: lost_worker("The actor died because its node has died.")}).endswith(
        "lost: its node died")
    assert failures.describe({0: lost_worker(preempted=True)}).endswith("lost: its node was preempted")
    assert failures.preempted({0: lost_worker(preempted=True)}) and not failures.preempted({0: lost_worker()})


def test_a_python_error_is_its_type_and_first_line():
    errors = {1: ValueError("bad shard\nmore detail"), 0: KeyError("x"), 2: ValueError("bad shard")}
    assert failures.describe(errors) == "worker 0 raised KeyError: 'x' (2 other worker(s) failed too)"
    assert failures.describe({1: ValueError("bad shard\nmore")}) == "worker 1 raised ValueError: bad shard"


def test_a_final_failure_is_one_line_and_the_log_keeps_every_error(tmp_path):
    error = WorkerGroupError("[Rank 0 Error Snippet]:\n" + HEALTH_CHECK + "\n" + DIED,
                             {0: lost_worker(), 1: RuntimeError("Connection reset by peer")})
    log = tmp_path / "run" / "failures.log"
    line = failures.summary(error, max_failures=0, resume_step=4, where="run r in /s", log_path=log)
    assert "\n" not in line and re.fullmatch(
        r"training failed: worker 0 \(pid 15775 on gpu-7/10\.0\.0\.7\) lost: .*; no retries left "
        r"\(train\.max_failures=0\); rerun to resume from step 4 \(run r in /s\); details in " + re.escape(str(log)),
        line), line
    assert "from step 0 (no checkpoint yet)" in failures.summary(error, max_failures=2, resume_step=None,
                                                                 where="w", log_path=log)

    survivor = RuntimeError("Connection reset by peer")
    setattr(survivor, failures.TRACEBACK_ATTR, "Traceback (most recent call last):\n  ...\nRuntimeError: reset\n")
    failures.append(log, "worker 0 lost; resuming from step 4", {"worker 0": lost_worker(), "worker 1": survivor})
    text = log.read_text()
    assert "worker 0 lost; resuming from step 4" in text and "WorkerHealthCheckFailedError" in text
    assert "worker process has died" in text and "Traceback (most recent call last)" in text


def test_tracebacks_stay_off_the_console_but_not_out_of_log_files(tmp_path):
    logger = logging.getLogger("ray.train")
    console, file = logging.StreamHandler(io.StringIO()), logging.FileHandler(tmp_path / "sys.log")
    logger.addHandler(console)
    logger.addHandler(file)
    try:
        failures.quiet_console_tracebacks()
        failures.quiet_console_tracebacks()  # idempotent
        assert len(console.filters) == 1 and not file.filters
        try:
            raise RuntimeError("gloo: Connection closed by peer")
        except RuntimeError:
            logger.warning("Graceful shutdown of backend failed.", exc_info=True)
        logger.error("Error in training function:\nTraceback (most recent call last):\n  File ...")
        logger.warning("Checkpoint upload has been running for 60s")
        assert console.stream.getvalue() == "Checkpoint upload has been running for 60s\n"
        file.flush()
        assert (tmp_path / "sys.log").read_text().count("Traceback (most recent call last)") == 2
    finally:
        logger.removeHandler(console)
        logger.removeHandler(file)
        file.close()
