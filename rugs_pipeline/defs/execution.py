"""The executor, chosen by ``$RUGS_EXECUTOR``: the same code runs steps locally or on a cluster.

Where a *run* starts (a local process, a Docker container, a Kubernetes job) is the run
launcher's business, which is instance configuration (``dagster.yaml``, see docs/SCALING.md).
Where the *steps* of that run execute is the executor, which is code: this module.
"""

from __future__ import annotations

import importlib
from importlib.metadata import version

import dagster as dg

from rugs_pipeline.config import ConfigError, Settings

# multiprocess, when chosen: a run's steps go two at a time on two cores; the run queue allows two
# runs, so at most four step processes share the machine
MAX_CONCURRENT = 2
# cluster executors ship in integrations kept out of the default install (Celery or the
# Kubernetes client are large): module, executor, package to install
INTEGRATIONS = {
    "celery": ("dagster_celery", "celery_executor", "dagster-celery"),
    "k8s": ("dagster_k8s", "k8s_job_executor", "dagster-k8s"),
}
CHOICES = ("multiprocess", "in_process", *INTEGRATIONS)


class ExecutorConfigError(ConfigError, RuntimeError):
    """``$RUGS_EXECUTOR`` names an unknown executor or one whose package is missing."""


def executor_from_env(environ: dict[str, str] | None = None) -> dg.ExecutorDefinition:
    settings = Settings.from_env(environ)
    name = settings.executor
    if name == "multiprocess":
        return dg.multiprocess_executor.configured({"max_concurrent": MAX_CONCURRENT})
    if name == "in_process":
        return dg.in_process_executor
    if name not in INTEGRATIONS:
        raise ExecutorConfigError(f"RUGS_EXECUTOR={name!r} is not one of {', '.join(CHOICES)}")
    module, attr, package = INTEGRATIONS[name]
    try:
        executor = getattr(importlib.import_module(module), attr)
    except ImportError as err:
        # integrations follow the 0.x line of the Dagster release; dagster-postgres is one of them
        raise ExecutorConfigError(
            f"RUGS_EXECUTOR={name} needs the {package} package: pip install {package}=={version('dagster-postgres')} ({err})"
        ) from None
    if name == "celery":
        # env references, not values: a broker URL may carry a password, and run config is stored
        celery = {key: {"env": var} for key, var, value in (("broker", "RUGS_CELERY_BROKER", settings.celery_broker),
                                                            ("backend", "RUGS_CELERY_BACKEND", settings.celery_backend))
                  if value}
        return executor.configured(celery) if celery else executor
    return executor
