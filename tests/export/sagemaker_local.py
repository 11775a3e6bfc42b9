"""Runs an exported SageMaker pipeline definition on this machine, reading only the definition.

It does what SageMaker Pipelines does with the parts the export uses, and nothing more: resolves
``Get`` (parameters with their defaults or the given values, the execution id), ``Std:Join`` and
``Std:JsonGet`` (from a step's PropertyFile in its ProcessingOutput); runs a ProcessingStep once
its DependsOn and the steps its placeholders read have succeeded, as ``ContainerEntrypoint`` +
``ContainerArguments`` with its ``Environment``, once per host of ``InstanceCount``, each host
with its own ``/opt/ml`` (a sandbox folder) holding ``config/resourceconfig.json``; evaluates a
ConditionStep's conditions and runs its IfSteps or its ElseSteps. It is a test's stand-in for the
service's scheduler (no cloud is reachable), not an emulator of its API.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Execution:
    """What ran: each processing job's host exit codes and output, and the steps not executed."""

    codes: dict[str, list[int]] = field(default_factory=dict)
    output: dict[str, str] = field(default_factory=dict)
    conditions: dict[str, bool] = field(default_factory=dict)
    not_executed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c == 0 for codes in self.codes.values() for c in codes)


class LocalPipeline:
    """One execution of a definition in ``workdir``."""

    def __init__(self, definition: dict[str, Any], execution_id: str, workdir: Path, *,
                 parameters: dict[str, str] | None = None, env: dict[str, str] | None = None) -> None:
        self.definition = definition
        self.execution_id = execution_id
        self.workdir = workdir
        self.values = {p["Name"]: (parameters or {}).get(p["Name"], p.get("DefaultValue"))
                       for p in definition["Parameters"]}
        missing = [k for k, v in self.values.items() if v is None]
        assert not missing, f"parameters without a value or default: {missing}"
        self.env = env or {}
        self.outputs: dict[str, Path] = {}     # step -> the folder its ProcessingOutput uploaded
        self.files: dict[tuple[str, str], str] = {}
        self.done: dict[str, bool] = {}
        self.ex = Execution()

    def run(self) -> Execution:
        pending = list(self.definition["Steps"])
        while pending:
            ready = [s for s in pending if all(d in self.done for d in self._needs(s))]
            assert ready, f"steps wait for steps that never run: {[s['Name'] for s in pending]}"
            for step in ready:
                pending.remove(step)
                if not all(self.done[d] for d in self._needs(step)):
                    self._skip(step)
                    continue
                if step["Type"] == "Condition":
                    taken = all(self._condition(c) for c in step["Arguments"]["Conditions"])
                    self.ex.conditions[step["Name"]] = taken
                    self.done[step["Name"]] = True
                    branch, other = ("IfSteps", "ElseSteps") if taken else ("ElseSteps", "IfSteps")
                    pending += step["Arguments"][branch]
                    for s in step["Arguments"][other]:
                        self._skip(s)
                else:
                    self.done[step["Name"]] = self._process(step)
        return self.ex

    def _skip(self, step: dict[str, Any]) -> None:
        self.ex.not_executed.append(step["Name"])
        self.done[step["Name"]] = False
        if step["Type"] == "Condition":
            for s in step["Arguments"]["IfSteps"] + step["Arguments"]["ElseSteps"]:
                self._skip(s)

    def _needs(self, step: dict[str, Any]) -> list[str]:
        found = list(step.get("DependsOn", []))

        def walk(v: Any) -> None:
            if isinstance(v, dict):
                if set(v) == {"Get"} and v["Get"].startswith("Steps."):
                    found.append(v["Get"].split(".")[1])
                for x in v.values():
                    walk(x)
            elif isinstance(v, list):
                for x in v:
                    walk(x)

        args = dict(step["Arguments"])
        args.pop("IfSteps", None)
        args.pop("ElseSteps", None)
        walk(args)
        return found

    def value(self, v: Any) -> Any:
        if isinstance(v, dict) and set(v) == {"Get"}:
            where = v["Get"]
            if where.startswith("Parameters."):
                x = self.values[where.split(".", 1)[1]]
                return json.dumps(x) if isinstance(x, bool) else x
            assert where == "Execution.PipelineExecutionId", where
            return self.execution_id
        if isinstance(v, dict) and set(v) == {"Std:Join"}:
            return v["Std:Join"]["On"].join(str(self.value(x)) for x in v["Std:Join"]["Values"])
        if isinstance(v, dict) and set(v) == {"Std:JsonGet"}:
            get = v["Std:JsonGet"]
            _, step, _, name = get["PropertyFile"]["Get"].split(".")
            data = json.loads((self.outputs[step] / self.files[(step, name)]).read_text())
            for part in get["Path"].split("."):
                data = data[part]
            return data
        if isinstance(v, dict):
            return {k: self.value(x) for k, x in v.items()}
        if isinstance(v, list):
            return [self.value(x) for x in v]
        return v

    def _condition(self, c: dict[str, Any]) -> bool:
        assert c["Type"] == "Equals", c
        return self.value(c["LeftValue"]) == self.value(c["RightValue"])

    def _process(self, step: dict[str, Any]) -> bool:
        name = step["Name"]
        args = self.value(step["Arguments"])
        cluster = args["ProcessingResources"]["ClusterConfig"]
        hosts = [f"algo-{i + 1}" for i in range(cluster["InstanceCount"])]
        codes, logs = [], []
        for host in hosts:
            sandbox = self.workdir / name / host
            (sandbox / "opt/ml/config").mkdir(parents=True, exist_ok=True)
            (sandbox / "opt/ml/config/resourceconfig.json").write_text(
                json.dumps({"current_host": host, "hosts": hosts}))
            argv = [w.replace("/opt/ml/", f"{sandbox}/opt/ml/")
                    for w in args["AppSpecification"]["ContainerEntrypoint"]
                    + args["AppSpecification"].get("ContainerArguments", [])]
            env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
            env.update(self.env)
            env.update(args.get("Environment", {}))
            done = subprocess.run(argv, env=env, cwd=self.workdir, capture_output=True, text=True, timeout=300)
            codes.append(done.returncode)
            logs.append(f"[{host}] {done.stdout}{done.stderr}")
            for out in args.get("ProcessingOutputConfig", {}).get("Outputs", []):
                self.outputs[name] = Path(out["S3Output"]["LocalPath"].replace("/opt/ml/", f"{sandbox}/opt/ml/"))
        for f in step.get("PropertyFiles", []):
            self.files[(name, f["PropertyFileName"])] = f["FilePath"]
        self.ex.codes[name] = codes
        self.ex.output[name] = "\n".join(logs)
        return all(c == 0 for c in codes)
