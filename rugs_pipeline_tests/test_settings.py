"""One settings object read from the environment, overridable on the command line; one base for expected errors."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from rugs_pipeline.tools.audit import AuditError
from rugs_pipeline.capture.feed_url import FeedUrlError
from rugs_pipeline.capture.recorder import RecorderError
from rugs_pipeline.formats.recordings import RecordingError
from rugs_pipeline.config import ConfigError, Settings
from rugs_pipeline.consumers.replay import ReplayError
from rugs_pipeline.defs.execution import ExecutorConfigError
from rugs_pipeline.errors import RugsError
from rugs_pipeline.simulator.server import SimulatorError
from rugs_pipeline.store.layout import SchemaVersionError, UnreadableFileError

from .conftest import REPO_ROOT

CLI = REPO_ROOT / ".venv" / "bin" / "rugs-pipeline"


def test_settings_take_the_environment_and_their_defaults() -> None:
    settings = Settings.from_env({"RUGS_DATA_DIR": "s3://b/p", "RUGS_LEGACY_RECORDERS": "off", "RUGS_EXECUTOR": " K8S ",
                                  "RUGS_DERIVE_CRON": "", "DAGSTER_HOME": "/h"})
    assert (settings.data_dir, settings.legacy_recorders, settings.executor, settings.dagster_home) == \
        ("s3://b/p", False, "k8s", "/h")
    assert settings.derive_cron == "*/5 * * * *" and settings.spool_path is None  # empty: the default
    with pytest.raises(AttributeError):
        settings.data_dir = "elsewhere"  # frozen


@pytest.mark.parametrize("env, message", [
    ({"RUGS_FIRST_DAY": "2025-13-01"}, "RUGS_FIRST_DAY='2025-13-01' is not a day: give YYYY-MM-DD, e.g. 2025-10-29"),
    ({"RUGS_LEGACY_RECORDERS": "maybe"}, "RUGS_LEGACY_RECORDERS must be true or false, not 'maybe'"),
])
def test_a_setting_that_cannot_work_is_named_in_one_line(env: dict, message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)
    # every command refuses it before doing anything, in one line
    out = subprocess.run([str(CLI), "status"], env={**os.environ, "RUGS_DATA_DIR": str(tmp_path), **env},
                         capture_output=True, text=True, timeout=120)
    assert (out.returncode, out.stderr) == (1, f"error: {message}\n")


def test_data_dir_option_overrides_the_environment(tmp_path: Path) -> None:
    env = {**os.environ, "RUGS_DATA_DIR": str(tmp_path / "from_env")}
    out = subprocess.run([str(CLI), "--data-dir", str(tmp_path / "given"), "status", "--json"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["data_dir"] == str(tmp_path / "given")


@pytest.mark.parametrize("error", [ConfigError, ExecutorConfigError, AuditError, FeedUrlError, RecorderError,
                                   RecordingError, ReplayError, SimulatorError, SchemaVersionError,
                                   UnreadableFileError])
def test_expected_errors_share_one_base(error: type) -> None:
    assert issubclass(error, RugsError)
