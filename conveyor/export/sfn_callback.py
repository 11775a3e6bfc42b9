"""Handing a task's result back to AWS Step Functions (the task token of ``.waitForTaskToken``).

A Step Functions export starts each task with ``CONVEYOR_SFN_TASK_TOKEN`` in its environment and
waits until the task reports: the entry point calls :func:`report_to_step_functions` with what it
emitted (the state's result, read by Choice and Map states) after the step succeeded, was reused
or was skipped, and :func:`report_failure_to_step_functions` when it failed, so the execution
does not wait for the state's timeout. boto3 (``conveyor[stepfunctions]``) is imported only here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from conveyor.errors import ConfigurationError, ConveyorError

TOKEN_ENV = "CONVEYOR_SFN_TASK_TOKEN"
CAUSE_LIMIT = 32768          # SendTaskFailure's cause is at most 32,768 characters
ERRORS = {1: "Conveyor.StepFailed", 2: "Conveyor.UsageError"}   # by the entry point's exit status


def report_to_step_functions(emitted: dict[str, Any], env: Mapping[str, str]) -> None:
    """Send ``emitted`` (``{"cond_0": true, "fanout_score": [0, 1]}``) as the task's output.

    ``env`` is the task's environment (the token, and the AWS region and endpoint as boto3 reads
    them: ``AWS_REGION``/``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL_SFN``/``AWS_ENDPOINT_URL``).
    """
    client, token = _client(env)
    try:
        client.send_task_success(taskToken=token, output=json.dumps(emitted, separators=(",", ":")))
    except Exception as exc:   # botocore's errors stop here, translated
        raise ConveyorError(f"Step Functions refused this task's result ({exc}). The task token in {TOKEN_ENV} may "
                            "have timed out or belong to another execution.") from exc


def report_failure_to_step_functions(exit_code: int, cause: str, env: Mapping[str, str]) -> None:
    """Fail the task's state at once: ``Conveyor.StepFailed`` (exit 1) or ``Conveyor.UsageError`` (2).

    The state machine does not retry these (the entry point already ran the step's attempts).
    """
    client, token = _client(env)
    error = ERRORS.get(exit_code, "Conveyor.TaskError")
    try:
        client.send_task_failure(taskToken=token, error=error, cause=cause[-CAUSE_LIMIT:])
    except Exception as exc:
        raise ConveyorError(f"Step Functions refused this task's failure report ({exc}).") from exc


def _client(env: Mapping[str, str]) -> tuple[Any, str]:
    token = env.get(TOKEN_ENV)
    if not token:
        raise ConfigurationError(f"{TOKEN_ENV} is not set: this task was not started by a Step Functions export.")
    try:
        import boto3
    except ModuleNotFoundError:
        raise ConfigurationError("Reporting to Step Functions needs boto3: pip install 'conveyor[stepfunctions]' "
                            "in the image.") from None
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    endpoint = env.get("AWS_ENDPOINT_URL_SFN") or env.get("AWS_ENDPOINT_URL")
    return boto3.client("stepfunctions", region_name=region, endpoint_url=endpoint), token
