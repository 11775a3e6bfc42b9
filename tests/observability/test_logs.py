"""One JSON line format (CONVEYOR_LOG_FORMAT=json) with run, step and request ids, from the CLI,
the engine and the server."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from conveyor.config import log_format
from conveyor.errors import ConfigurationError
from conveyor.observability.logs import JsonFormatter
from conveyor.runtime.context import StepContext, set_current_step
from conveyor.serving.server import build_app
from tests.serving.conftest import run_server  # noqa: F401  (a fixture)

PIPELINE = '''
import conveyor as cv


def shout(context):
    raise RuntimeError("the hook broke")


@cv.step
def one() -> int:
    return 1


@cv.pipeline(on_success=shout)
def hooked():
    one()
'''


@pytest.mark.slow
def test_the_cli_and_the_engine_write_json_lines_naming_the_run(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(PIPELINE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env.update(CONVEYOR_HOME=str(tmp_path / "home"), CONVEYOR_LOG_FORMAT="json")
    done = subprocess.run([str(Path(sys.executable).parent / "conveyor"), "run", "flow.py:hooked", "--json"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["id"]
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    hook = next(line for line in lines if line["logger"] == "conveyor.hooks")
    assert hook["level"] == "WARNING" and hook["run_id"] == run_id and "the hook broke" in hook["message"]
    assert hook["time"].endswith("Z") and hook["step"] is None


def test_a_line_logged_in_a_step_names_the_run_step_and_attempt() -> None:
    token = set_current_step(StepContext(run_id="r1", step_name="train", node_name="train[2]", step_run_id="s1",
                                         attempt=2))
    try:
        try:
            raise ValueError("boom")
        except ValueError:
            record = logging.getLogger("user.code").makeRecord(
                "user.code", logging.ERROR, __file__, 1, "failed on %s", ("batch 3",), sys.exc_info(),
                extra={"rows": 10})
        line = json.loads(JsonFormatter().format(record))
    finally:
        set_current_step(None)
        del token
    assert (line["run_id"], line["step"], line["attempt"], line["rows"]) == ("r1", "train[2]", 2, 10)
    assert line["message"] == "failed on batch 3" and "ValueError: boom" in line["exception"]


class Broken:
    def predict(self, frame):
        import numpy as np

        values = np.asarray(frame, dtype=float)
        if (values > 100).any():
            raise ArithmeticError("the model broke")
        return values.ravel() * 2


def test_a_failed_request_is_logged_with_its_request_id(client, run_server) -> None:  # noqa: F811
    import pandas as pd

    frame = pd.DataFrame({"x": [1.0, 2.0]})
    large = pd.DataFrame({"x": [1000.0]})
    v = client.registry.register("broken", Broken(), data=frame)
    client.registry.set_alias("broken", "staging", v.version)
    client.metadata.endpoints.create("broken-api", {"routes": [{"model": "broken@staging", "weight": 100}],
                                                    "shadows": [], "sticky_header": None}, "test")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("conveyor.serving")
    logger.addHandler(handler)
    try:
        server = run_server(build_app(client.settings, access_log=False))
        answer = httpx.post(f"{server.url}/invocations", json={"dataframe_records": large.to_dict(orient="records")},
                            headers={"X-Request-ID": "req-77"}, timeout=30)
    finally:
        logger.removeHandler(handler)
    assert answer.status_code == 500 and answer.json()["request_id"] == "req-77"
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    failed = next(line for line in lines if line["request_id"] == "req-77")
    assert failed["level"] == "ERROR" and "the model broke" in failed["exception"]


def test_an_unknown_log_format_is_refused_with_the_choices() -> None:
    assert log_format({}) == "text" and log_format({"CONVEYOR_LOG_FORMAT": "JSON"}) == "json"
    with pytest.raises(ConfigurationError, match="Use text or json"):
        log_format({"CONVEYOR_LOG_FORMAT": "xml"})
