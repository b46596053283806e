"""A ``dask.distributed`` client for distributed inference: a local cluster or an existing one.

Needs the optional package ``distributed`` (``pip install "resprunet[dask]"``).

:func:`connect` either starts a :class:`distributed.LocalCluster` of ``workers`` processes on
the loopback interface (one thread each, no dashboard, TensorFlow told to use
``cores // workers`` threads, ``memory_limit`` bytes per worker) or connects to the scheduler
at ``scheduler``, giving up after ``connect_timeout`` seconds with
:class:`SchedulerUnreachableError` (a one-line message).
"""
from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from data_pipelines.errors import DataPipelineError

__all__ = ["DistributedMissingError", "SchedulerUnreachableError", "connect", "default_memory_limit",
           "worker_memory_limit", "CONNECT_TIMEOUT", "MEMORY_LIMIT_CAP"]

log = logging.getLogger(__name__)

#: Seconds to wait for a scheduler to answer before :class:`SchedulerUnreachableError`.
CONNECT_TIMEOUT = 5.0
#: Largest default memory limit of one local worker, bytes (4 GiB).
MEMORY_LIMIT_CAP = 4 * 2**30


class DistributedMissingError(DataPipelineError, ImportError):
    """The optional ``distributed`` package is not installed."""


class SchedulerUnreachableError(DataPipelineError, ConnectionError):
    """No Dask scheduler answered at the given address within the connect timeout."""


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise DistributedMissingError(
            'distributed inference needs the optional package distributed: pip install "resprunet[dask]"'
        ) from exc
    return distributed


def default_memory_limit(workers: int) -> int:
    """Memory limit of each of ``workers`` local workers, bytes: an equal share of the
    physical memory, at most :data:`MEMORY_LIMIT_CAP`."""
    import psutil

    return int(min(psutil.virtual_memory().total / max(1, workers), MEMORY_LIMIT_CAP))


def worker_memory_limit(client: Any) -> int | None:
    """The smallest ``memory_limit`` (bytes) among the client's workers; None when none is set."""
    limits = [w.get("memory_limit") or 0 for w in client.scheduler_info()["workers"].values()]
    limits = [int(m) for m in limits if m]
    return min(limits) if limits else None


@contextlib.contextmanager
def connect(
    scheduler: str | None = None,
    *,
    workers: int = 2,
    memory_limit: int | str | None = None,
    connect_timeout: float = CONNECT_TIMEOUT,
) -> Iterator[Any]:
    """Yield a :class:`distributed.Client`: to ``scheduler``, or to a new local cluster.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler (``tcp://host:8786``); its workers are used as they
        are (their own memory limits and threads). None: start a :class:`distributed.LocalCluster`.
    workers : int
        Worker processes of the local cluster (one thread each).
    memory_limit : int or str, optional
        Memory limit of each local worker (bytes, or a string such as ``"1.5GiB"``); Dask
        spills to disk at 60 % of it, pauses the worker at 80 % and restarts it at 95 %. None:
        :func:`default_memory_limit`. A TensorFlow worker process needs about 0.65 GB before
        its first tile; give at least 1 GiB.
    connect_timeout : float
        Seconds to wait for ``scheduler`` to answer.

    Raises
    ------
    SchedulerUnreachableError
        Nothing answered at ``scheduler`` within ``connect_timeout`` seconds.
    DistributedMissingError
        ``distributed`` is not installed.
    """
    distributed = _import_distributed()
    if scheduler is not None:
        try:
            client = distributed.Client(scheduler, timeout=connect_timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise SchedulerUnreachableError(
                f"no Dask scheduler answered at {scheduler} within {connect_timeout:g} s "
                f"({type(exc).__name__}); check the address (tcp://host:port) and that the scheduler runs"
            ) from exc
        with client:
            yield client
        return
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    threads = max(1, (os.cpu_count() or 1) // workers)
    env = {"TF_NUM_INTRAOP_THREADS": str(threads), "TF_NUM_INTEROP_THREADS": "1",
           "OMP_NUM_THREADS": str(threads), "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    limit = default_memory_limit(workers) if memory_limit is None else memory_limit
    log.info("starting a local Dask cluster: %d worker process(es), %d TensorFlow thread(s) and a "
             "memory limit of %s each", workers, threads,
             f"{limit / 2**20:.0f} MiB" if isinstance(limit, (int, float)) else limit)
    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None, memory_limit=limit,
                                  env=env, silence_logs=logging.WARNING) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        yield client
