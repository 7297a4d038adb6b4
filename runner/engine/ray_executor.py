"""Sending work to Ray: a study's (run, checkpoint) measurements and a seed matrix's trainings.

Each task is the same `StepTask` the local executor runs (`step_worker.measure_step`), so the
results are byte-identical to a local run with the same threads per task. A worker that dies
mid-task (killed, out of memory) is retried by Ray up to `MAX_RETRIES` times; the measurement
cache stays valid because every cache entry is written atomically (a killed task leaves no half
entry). With no address a local Ray instance is started with this machine's CPUs.

Workers need the run directory, the data and the cache directory at the same paths (shared
storage on a cluster); see docs/own_model.md, "Run on Ray".

`HYPODSL_RAY_KILL_ONCE=FILE` (for the tests): the first task to find FILE absent creates it and
kills its own worker process, as a node failure would.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from typing import Any

from hypodsl.errors import UserError
from runner.engine.progress import Progress
from runner.engine.step_worker import StepOutcome, StepTask, measure_step

MAX_RETRIES = 3
KILL_ONCE = "HYPODSL_RAY_KILL_ONCE"


class RayError(UserError):
    """Ray is missing, or the cluster at --ray-address cannot be reached."""


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayError(
            "--executor ray needs Ray: pip install 'hypodsl[ray]' (or pip install ray)"
        ) from None
    return ray


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """A clear error now, rather than Ray's retries, when nothing listens at HOST:PORT."""
    if address == "auto":
        return
    host_port = address.removeprefix("ray://")
    host, sep, port = host_port.rpartition(":")
    if not sep or not port.isdigit():
        raise RayError(f"--ray-address {address}: expected HOST:PORT, ray://HOST:PORT or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise RayError(
            f"--ray-address {address}: no Ray cluster reachable there ({reason})"
        ) from None


def connect(address: str | None) -> Any:
    """Ray, initialised: joined to the cluster at `address`, or a new local instance."""
    ray = _ray()
    if ray.is_initialized():
        return ray
    if address is not None:
        check_reachable(address)
    env = {KILL_ONCE: os.environ[KILL_ONCE]} if KILL_ONCE in os.environ else {}
    ray.init(
        address=address,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        runtime_env={"env_vars": env} if env else None,
    )
    return ray


def _measure(task: StepTask) -> StepOutcome:
    marker = os.environ.get(KILL_ONCE)
    if marker:
        try:
            with open(marker, "x"):
                pass
        except FileExistsError:
            pass
        else:
            os._exit(1)  # a dead worker, not an exception: Ray must retry the task
    return measure_step(task)


def _run_remote(
    fn: Callable[..., Any], args: Sequence[tuple[Any, ...]], cpus: Sequence[int],
    progress: Progress, address: str | None,
) -> list[Any]:  # fmt: skip
    """fn(*a) for every a, each a Ray task needing that many CPUs, in the order given."""
    ray = connect(address)
    remote = ray.remote(max_retries=MAX_RETRIES, retry_exceptions=False)(fn)
    pending = {
        remote.options(num_cpus=n).remote(*a): i
        for i, (a, n) in enumerate(zip(args, cpus, strict=True))
    }
    results: list[Any] = [None] * len(pending)
    waiting = list(pending)
    while waiting:
        done, waiting = ray.wait(waiting, num_returns=1)
        for ref in done:
            try:
                results[pending[ref]] = ray.get(ref)
            except ray.exceptions.RayTaskError as e:  # the task's own error: re-raise it
                raise e.as_instanceof_cause() from None
            except ray.exceptions.RayError as e:
                raise RayError(f"a Ray task failed after {MAX_RETRIES} retries ({e})") from None
            progress.advance()
    return results


def measure_on_ray(
    tasks: list[StepTask], progress: Progress, address: str | None
) -> list[StepOutcome]:
    """Every checkpoint's measurements as Ray tasks; outcomes in step order."""
    ray = connect(address)
    cluster = int(ray.cluster_resources().get("CPU", 1))
    cpus = [max(1, min(t.threads or 1, cluster)) for t in tasks]
    outcomes = _run_remote(_measure, [(t,) for t in tasks], cpus, progress, address)
    return sorted(outcomes, key=lambda o: o.step)


def run_on_ray(
    fn: Callable[..., Any], args: Sequence[tuple[Any, ...]], cpus: int, progress: Progress,
    address: str | None,
) -> list[Any]:  # fmt: skip
    """fn(*a) for every a as Ray tasks of `cpus` CPUs each (a seed matrix's trainings)."""
    return _run_remote(fn, args, [cpus] * len(args), progress, address)
