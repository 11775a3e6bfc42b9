"""Kubeflow Pipelines and Vertex AI: a plan compiled into the KFP v2 IR (a ``PipelineSpec`` as YAML).

The IR is written directly from the plan (``kfp_ir``; no SDK is needed to export). Each task is a
Lightweight Python Component whose function calls Conveyor's entry point in the image and returns
what it emitted; conditions are ``dsl.If`` sub-DAGs, fan-outs ``dsl.ParallelFor`` sub-DAGs, retries
the task's retry policy. The same file runs on Kubeflow, on Vertex AI and under ``kfp.local``.

Vertex AI runs the same IR; it differs in the resources (a machine type becomes the CPU and memory
limits Vertex picks that machine from, a GPU needs a Vertex accelerator type) and in the commands
that submit it. The KFP target adds the Kubernetes platform spec (``kfp-kubernetes``'s
``set_timeout`` and node selectors) for a task's deadline and instance type.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from conveyor.errors import ExportError
from conveyor.export.base import ExportOptions, build_commands
from conveyor.export.kfp_ir import (
    IR_FILE,
    JOB_ID_PLACEHOLDER,
    KFP_VERSION,
    RUN_ID_INPUT,
    compile_ir,
    cpu_text,
    memory_text,
    task_ids,
)
from conveyor.export.plan import Plan, Task

__all__ = ["IR_FILE", "JOB_ID_PLACEHOLDER", "KFP_VERSION", "RUN_ID_INPUT", "KfpTarget", "Machine", "VertexTarget",
           "task_ids", "vertex_machine"]


class KfpTarget:
    """Kubeflow Pipelines (v2 IR), with the Kubernetes platform spec for deadlines and instance types."""

    name: ClassVar[str] = "kfp"
    extra: ClassVar[str] = "kfp"
    option_names: ClassVar[tuple[str, ...]] = ("accelerator_type", "pipeline_root", "install_kfp", "metadata_secret")
    platform: ClassVar[str] = "kubernetes"

    def compile(self, plan: Plan, options: ExportOptions) -> dict[str, str]:
        """The IR (``pipeline.yaml``) of ``plan``."""
        return {IR_FILE: compile_ir(plan, options, self)}

    def next_commands(self, plan: Plan, files: Sequence[Path], options: ExportOptions) -> list[str]:
        """Build and push the image, then submit the IR with the KFP SDK's client."""
        ir = _ir_path(files)
        out_dir = ir.parent
        # parameters as KEY=VALUE after the file; conveyor_resume_from=RUN_ID resumes a run
        return [*build_commands(plan, out_dir),
                f"kfp --endpoint $KFP_ENDPOINT run create --experiment-name {plan.pipeline} --package-file {ir}"]

    # --- what differs between Kubeflow and Vertex AI --------------------------------------------------

    def resources(self, task: Task, options: ExportOptions) -> dict[str, Any]:
        """The container's resource spec: limits as the SDK's set_cpu_limit/set_memory_limit write them."""
        res: dict[str, Any] = {}
        if task.cpus is not None:
            res.update(cpuLimit=float(task.cpus), resourceCpuLimit=cpu_text(task.cpus))
        if task.memory is not None:
            size = task.memory_bytes or 0
            res.update(memoryLimit=size / 1e9, resourceMemoryLimit=memory_text(size))
        if task.gpus:
            kind = options.get("accelerator_type") or "nvidia.com/gpu"
            res["accelerator"] = {"count": str(task.gpus), "resourceCount": str(task.gpus), "type": kind,
                                  "resourceType": kind}
        return res

    def platform_executor(self, task: Task, options: ExportOptions) -> dict[str, Any]:
        """The Kubernetes executor config of a task: deadline, instance type, the metadata URL's secret.

        ``--option metadata_secret=NAME[:KEY]`` sets ``CONVEYOR_METADATA_URL`` in every task from the
        Kubernetes Secret ``NAME`` (key ``KEY``, default ``url``), as ``kfp.kubernetes.use_secret_as_env``
        does: the database password never enters the definition.
        """
        config: dict[str, Any] = {}
        secret = options.get("metadata_secret")
        if secret:
            name, _, key = secret.partition(":")
            config["secretAsEnv"] = [{"keyToEnv": [{"envVar": "CONVEYOR_METADATA_URL", "secretKey": key or "url"}],
                                      "optional": False, "secretName": name,
                                      "secretNameParameter": {"runtimeValue": {"constant": name}}}]
        if task.deadline_s is not None:
            config["activeDeadlineSeconds"] = str(task.deadline_s)
        if task.instance_type:
            config["nodeSelector"] = {"labels": {"node.kubernetes.io/instance-type": task.instance_type}}
        return config


class VertexTarget(KfpTarget):
    """Vertex AI Pipelines: the same IR; machine types and accelerators as Vertex names them."""

    name: ClassVar[str] = "vertex"
    extra: ClassVar[str] = "kfp"
    option_names: ClassVar[tuple[str, ...]] = ("accelerator_type", "pipeline_root", "install_kfp", "project",
                                               "region", "service_account")
    platform: ClassVar[str] = ""

    def resources(self, task: Task, options: ExportOptions) -> dict[str, Any]:
        """CPU and memory limits (from the machine type when one is named) and a Vertex accelerator."""
        cpus, memory = task.cpus, task.memory_bytes
        accelerator = options.get("accelerator_type")
        if task.instance_type:
            machine = vertex_machine(task.instance_type, task.name)
            if (cpus or 0) > machine.cpus or (memory or 0) > machine.memory:
                raise ExportError(
                    f"Step '{task.name}' asks for {cpus or 0} CPUs and {task.memory or 0} of memory, more than the "
                    f"machine type {task.instance_type} has ({machine.cpus} CPUs, {machine.memory / 2**30:g}Gi). "
                    "Name a larger machine type with --instance-type, or lower the step's cpus/memory.")
            cpus, memory = machine.cpus, machine.memory
            if task.gpus and machine.gpus and task.gpus > machine.gpus:
                raise ExportError(
                    f"Step '{task.name}' asks for {task.gpus} GPUs; machine type {task.instance_type} has "
                    f"{machine.gpus}. Name a machine type with more GPUs (a2-highgpu-{task.gpus}g) or ask for fewer.")
            accelerator = accelerator or machine.accelerator
        res: dict[str, Any] = {}
        if cpus is not None:
            res.update(cpuLimit=float(cpus), resourceCpuLimit=cpu_text(cpus))
        if memory is not None:
            res.update(memoryLimit=memory / 1e9, resourceMemoryLimit=memory_text(memory))
        if task.gpus:
            if not accelerator:
                raise ExportError(
                    f"Step '{task.name}' asks for {task.gpus} GPU(s), and Vertex AI needs the accelerator's type. "
                    "Export with --option accelerator_type=NVIDIA_TESLA_T4 (or another Vertex accelerator), or "
                    f"--instance-type {task.step}=a2-highgpu-1g / g2-standard-8 (a machine type with GPUs).")
            res["accelerator"] = {"count": str(task.gpus), "resourceCount": str(task.gpus), "type": accelerator,
                                  "resourceType": accelerator}
        return res

    def platform_executor(self, task: Task, options: ExportOptions) -> dict[str, Any]:
        # Vertex AI reads no Kubernetes platform spec: a step's timeout is enforced per attempt by the
        # entry point inside the task, and the machine type is chosen from the resource limits.
        return {}

    def next_commands(self, plan: Plan, files: Sequence[Path], options: ExportOptions) -> list[str]:
        """Build and push the image, then submit the IR as a Vertex AI PipelineJob."""
        ir = _ir_path(files)
        project = options.get("project") or "PROJECT"
        region = options.get("region") or "us-central1"
        root = options.get("pipeline_root") or "gs://BUCKET/pipeline-root"
        account = options.get("service_account")
        submit = (f"from google.cloud import aiplatform; aiplatform.init(project='{project}', location='{region}'); "
                  f"aiplatform.PipelineJob(display_name='{plan.pipeline}', template_path='{ir}', "
                  f"pipeline_root='{root}', enable_caching=False).submit("
                  + (f"service_account='{account}'" if account else "") + ")")
        image_host = plan.image.split("/")[0]
        registry = image_host if image_host.endswith(("docker.pkg.dev", "gcr.io")) else f"{region}-docker.pkg.dev"
        return [f"gcloud auth configure-docker {registry}",
                *build_commands(plan, ir.parent),
                "pip install google-cloud-aiplatform",
                f"python -c \"{submit}\""]


def _ir_path(files: Sequence[Path]) -> Path:
    return next((f for f in files if f.name == IR_FILE), Path(IR_FILE))


@dataclass(frozen=True, slots=True)
class Machine:
    """A Vertex AI (Compute Engine) machine type: what its name promises."""

    cpus: int
    memory: int                 # bytes
    gpus: int = 0
    accelerator: str = ""


# family -> (memory GiB per vCPU, accelerator); a2/a3 name their GPU count instead ("a2-highgpu-2g")
_FAMILIES = {"standard": 4.0, "highmem": 8.0, "highcpu": 1.0}
_N1 = {"standard": 3.75, "highmem": 6.5, "highcpu": 0.9}
_GPU_MACHINES = {"a2-highgpu": (12, 85, "NVIDIA_TESLA_A100"), "a2-ultragpu": (12, 170, "NVIDIA_A100_80GB"),
                 "a3-highgpu": (26, 234, "NVIDIA_H100_80GB")}
_G2_GPUS = {4: 1, 8: 1, 12: 1, 16: 1, 24: 2, 32: 1, 48: 4, 96: 8}


def vertex_machine(name: str, step: str) -> Machine:
    """The CPUs, memory and GPUs of a machine type (``n1-standard-8``, ``e2-highmem-4``, ``a2-highgpu-1g``)."""
    m = re.fullmatch(r"(a2-highgpu|a2-ultragpu|a3-highgpu)-(\d+)g", name)
    if m:
        cpus, mem, accel = _GPU_MACHINES[m.group(1)]
        k = int(m.group(2))
        return Machine(cpus * k, int(mem * k * 2**30), k, accel)
    m = re.fullmatch(r"(e2|n1|n2|n2d|c2|c2d|c3|g2)-(standard|highmem|highcpu)-(\d+)", name)
    if m:
        family, kind, cpus = m.group(1), m.group(2), int(m.group(3))
        per_cpu = (_N1 if family == "n1" else _FAMILIES)[kind]
        if family == "g2":
            return Machine(cpus, int(4 * cpus * 2**30), _G2_GPUS.get(cpus, 1), "NVIDIA_L4")
        return Machine(cpus, int(per_cpu * cpus * 2**30))
    raise ExportError(f"Step '{step}': {name!r} is not a Vertex AI machine type this export knows (e2, n1, n2, n2d, "
                      "c2, c2d, c3 and g2 -standard/-highmem/-highcpu-N, a2-highgpu-Ng, a2-ultragpu-Ng, "
                      "a3-highgpu-Ng). "
                      "Name one of those, or set the step's cpus and memory and let Vertex pick the machine.")
