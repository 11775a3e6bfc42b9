"""Handing a task's result back to AWS Step Functions (the task token of ``.waitForTaskToken``).

A Step Functions export starts each task with ``CONVEYOR_SFN_TASK_TOKEN`` in its environment and
waits until the task reports. The task definition's entry point is this module
(``python -m conveyor.export.sfn_callback step exec ...``): it runs the step entry point as a child
process with ``--emit-json``, then sends what it emitted (the state's result, read by Choice and
Map states) when it exited 0, or fails the state at once with an error named by its exit status,
so the execution never waits for the state's timeout on a task that ended. The child does not see
the token. The two report functions can also be called by an entry point that reports itself.
boto3 (``conveyor[stepfunctions]``, in the image) is imported only here.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from conveyor.errors import ConfigurationError, ConveyorError

TOKEN_ENV = "CONVEYOR_SFN_TASK_TOKEN"
CAUSE_LIMIT = 32768          # SendTaskFailure's cause is at most 32,768 characters
ERRORS = {1: "Conveyor.StepFailed", 2: "Conveyor.UsageError"}   # by the entry point's exit status
CAUSE_LINES = 40             # the end of the child's stderr, as the failure's cause
_CLIENTS = threading.Lock()


def run_and_report(argv: Sequence[str], env: Mapping[str, str], *, python: str | None = None) -> int:
    """Run ``python -m conveyor ARGV --emit-json F`` and report its outcome with the task token.

    Returns the child's exit status (128 + the signal when a signal ended it). Its stderr passes
    through, and its last lines become the cause of a failure.
    """
    if not env.get(TOKEN_ENV):   # refused before the step runs: nobody could be told its outcome
        raise ConfigurationError(f"{TOKEN_ENV} is not set: this task was not started by a Step Functions export. "
                                 "Run `python -m conveyor step exec ...` itself outside Step Functions.")
    child_env = {k: v for k, v in env.items() if k != TOKEN_ENV}
    # boto3's import and client cost about as much as the entry point's start: made while the step runs
    pool = ThreadPoolExecutor(max_workers=1)
    client = pool.submit(sfn_client, env)
    pool.shutdown(wait=False)
    with tempfile.TemporaryDirectory(prefix="conveyor-sfn-") as tmp:
        emitted_file = Path(tmp) / "emitted.json"
        proc = subprocess.Popen([python or sys.executable, "-m", "conveyor", *argv, "--emit-json", str(emitted_file)],
                                env=child_env, stderr=subprocess.PIPE, text=True, errors="replace")
        tail: collections.deque[str] = collections.deque(maxlen=CAUSE_LINES)
        assert proc.stderr is not None
        for line in proc.stderr:
            sys.stderr.write(line)
            tail.append(line)
        code = proc.wait()
        code = 128 - code if code < 0 else code
        if code == 0:
            emitted = json.loads(emitted_file.read_text()) if emitted_file.exists() else {}
            report_to_step_functions(emitted, env, client=client.result())
        else:
            report_failure_to_step_functions(code, "".join(tail) or f"exit status {code}", env,
                                             client=client.result())
    return code


def report_to_step_functions(emitted: dict[str, Any], env: Mapping[str, str], *, client: Any = None) -> None:
    """Send ``emitted`` (``{"cond_0": true, "fanout_score": [0, 1]}``) as the task's output.

    ``env`` is the task's environment (the token, and the AWS region and endpoint as boto3 reads
    them: ``AWS_REGION``/``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL_SFN``/``AWS_ENDPOINT_URL``);
    ``client`` a Step Functions client made by :func:`sfn_client` beforehand.
    """
    token = _token(env)
    client = client or sfn_client(env)
    try:
        client.send_task_success(taskToken=token, output=json.dumps(emitted, separators=(",", ":")))
    except Exception as exc:   # botocore's errors stop here, translated
        raise ConveyorError(f"Step Functions refused this task's result ({exc}). The task token in {TOKEN_ENV} may "
                            "have timed out or belong to another execution.") from exc


def report_failure_to_step_functions(exit_code: int, cause: str, env: Mapping[str, str], *,
                                     client: Any = None) -> None:
    """Fail the task's state at once: ``Conveyor.StepFailed`` (exit 1) or ``Conveyor.UsageError`` (2).

    The state machine does not retry these (the entry point already ran the step's attempts).
    """
    token = _token(env)
    client = client or sfn_client(env)
    error = ERRORS.get(exit_code, "Conveyor.TaskError")
    try:
        client.send_task_failure(taskToken=token, error=error, cause=cause[-CAUSE_LIMIT:])
    except Exception as exc:
        raise ConveyorError(f"Step Functions refused this task's failure report ({exc}).") from exc


def _token(env: Mapping[str, str]) -> str:
    token = env.get(TOKEN_ENV)
    if not token:
        raise ConfigurationError(f"{TOKEN_ENV} is not set: this task was not started by a Step Functions export.")
    return token


def sfn_client(env: Mapping[str, str]) -> Any:
    """A boto3 Step Functions client for the region and endpoint in ``env``."""
    try:
        import boto3
    except ModuleNotFoundError:
        raise ConfigurationError("Reporting to Step Functions needs boto3: pip install 'conveyor[stepfunctions]' "
                                 "in the image.") from None
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    endpoint = env.get("AWS_ENDPOINT_URL_SFN") or env.get("AWS_ENDPOINT_URL")
    with _CLIENTS:   # boto3's default session does not make clients safely from several threads at once
        return boto3.client("stepfunctions", region_name=region, endpoint_url=endpoint)

def main(argv: Sequence[str] | None = None) -> None:
    """The task's process: run the step entry point with this process's environment and report."""
    import os

    # the process edge: the task's whole environment is handed to the child as ECS set it
    try:
        code = run_and_report(sys.argv[1:] if argv is None else argv, dict(os.environ))
    except ConveyorError as exc:
        print(f"{exc.headline}: {exc.message}", file=sys.stderr)
        code = exc.exit_code
    sys.exit(code)


if __name__ == "__main__":
    main()
