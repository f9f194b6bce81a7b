"""The executor comes from $RUGS_EXECUTOR: real runs under each local executor, clear errors otherwise."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from rugs_pipeline.defs.execution import ExecutorConfigError, executor_from_env
from rugs_pipeline.store.layout import Store
from rugs_pipeline.testing import DAY, game_frames, sealed_segment

from .conftest import REPO_ROOT

DAGSTER = str(REPO_ROOT / ".venv" / "bin" / "dagster")
# what each executor writes in the run's event log when it starts executing steps
ENGINE_MESSAGE = {"multiprocess": "Executing steps using multiprocess executor", "in_process": "Executing steps in process"}


@pytest.mark.parametrize("value, name", [(None, "in_process"), ("", "in_process"), ("multiprocess", "multiprocess"),
                                         ("In_Process", "in_process")])
def test_executor_follows_the_environment(value: str | None, name: str) -> None:
    env = {} if value is None else {"RUGS_EXECUTOR": value}
    assert executor_from_env(env).name == name


def test_unknown_executor_lists_the_choices() -> None:
    with pytest.raises(ExecutorConfigError, match="'ray' is not one of multiprocess, in_process, celery, k8s"):
        executor_from_env({"RUGS_EXECUTOR": "ray"})


@pytest.mark.parametrize("name, module, package", [("celery", "dagster_celery", "dagster-celery"),
                                                   ("k8s", "dagster_k8s", "dagster-k8s")])
def test_cluster_executor_without_its_package_names_the_package(name: str, module: str, package: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed, whatever this venv holds
    with pytest.raises(ExecutorConfigError) as err:
        executor_from_env({"RUGS_EXECUTOR": name})
    message = str(err.value)
    assert "\n" not in message and f"pip install {package}==0." in message, message


@pytest.mark.skipif(importlib.util.find_spec("dagster_celery") is not None, reason="dagster-celery is installed here")
def test_code_location_reports_a_missing_integration_in_one_line() -> None:
    out = subprocess.run([DAGSTER, "definitions", "validate", "-w", "workspace.yaml"], cwd=REPO_ROOT,
                         env={**os.environ, "RUGS_EXECUTOR": "celery"}, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "RUGS_EXECUTOR=celery needs the dagster-celery package: pip install dagster-celery==0." in out.stdout + out.stderr


@pytest.mark.parametrize("executor", ["multiprocess", "in_process"])
def test_a_run_executes_under_the_executor_the_environment_names(executor: str, tmp_path: Path) -> None:
    # a persistent instance (the multiprocess executor refuses an ephemeral one) with the repo's settings
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    data = tmp_path / "rugs_data"
    sealed_segment(Store(data), "s1", game_frames("20251207-aaaaaaaaaaaaaaaa", 5))
    env = {**os.environ, "RUGS_EXECUTOR": executor, "RUGS_DATA_DIR": str(data), "DAGSTER_HOME": str(home)}
    out = subprocess.run([DAGSTER, "job", "execute", "-m", "rugs_pipeline.definitions", "-j", "land_ws_event",
                          "--tags", f'{{"dagster/partition": "{DAY}"}}'],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]

    with dg.DagsterInstance.from_config(str(home)) as instance:
        [run] = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.SUCCESS and run.tags["dagster/partition"] == DAY
        messages = [e.message for e in instance.all_logs(run.run_id)]
    assert any(ENGINE_MESSAGE[executor] in m for m in messages), messages
    step_processes = [m for m in messages if m.startswith("Executing step") and "in subprocess" in m]
    assert bool(step_processes) == (executor == "multiprocess")
    assert Store(data).read_partition("ws_event", DAY).num_rows == len(game_frames("x", 5))
