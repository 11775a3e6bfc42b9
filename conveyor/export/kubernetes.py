"""Kubernetes manifests for the serving image: Deployment, Service, HorizontalPodAutoscaler, and a KServe
``InferenceService`` for clusters that run KServe.

The probes name routes the server answers on every platform: ``/healthz`` (alive: the process
serves HTTP) and ``/readyz`` (ready: the model is loaded and routed). The server listens only once
the model is loaded and verified, so a startup probe gives a slow model fetch time before the
liveness probe may restart the pod. Credentials for a model on an object store come from a Secret
by reference (``envFrom``), never inline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.errors import ConfigurationError
from conveyor.export.yaml_text import to_yaml

LIVENESS_PATH = "/healthz"
READINESS_PATH = "/readyz"
CONTAINER_PORT = 8080
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


@dataclass(frozen=True, slots=True)
class Resources:
    """Requests and limits of one serving container, in Kubernetes quantities."""

    cpu: str = "500m"
    memory: str = "1Gi"
    cpu_limit: str | None = "2"
    memory_limit: str | None = "2Gi"

    def as_dict(self) -> dict[str, Any]:
        limits = {k: v for k, v in (("cpu", self.cpu_limit), ("memory", self.memory_limit)) if v}
        return {"requests": {"cpu": self.cpu, "memory": self.memory}, **({"limits": limits} if limits else {})}


def kubernetes_name(text: str) -> str:
    """``text`` as a DNS-1123 label (what names of Deployments, Services and InferenceServices must be)."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63].rstrip("-")
    if not _DNS_LABEL.fullmatch(name):
        raise ConfigurationError(f"{text!r} cannot be made a Kubernetes name (lowercase letters, digits and '-'). "
                                 "Pass --name.")
    return name


def _probe(path: str, *, period: int, failures: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period, "timeoutSeconds": 2,
            "failureThreshold": failures}


def serving_container(name: str, image: str, model_uri: str | None, resources: Resources,
                      secret_name: str | None, port: int = CONTAINER_PORT) -> dict[str, Any]:
    """The container both the Deployment and the InferenceService run (listening on ``PORT``, else 8080)."""
    # Knative (under KServe) sets PORT itself and refuses a container that sets it; 8080 is the default anyway
    env = [{"name": "PORT", "value": str(port)}] if port != CONTAINER_PORT else []
    if model_uri:
        env.append({"name": "CONVEYOR_MODEL_URI", "value": model_uri})
    container: dict[str, Any] = {
        "name": name, "image": image, "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        **({"env": env} if env else {}),
        "resources": resources.as_dict(),
        "startupProbe": _probe(LIVENESS_PATH, period=5, failures=60),     # up to 5 minutes to fetch and verify
        "livenessProbe": _probe(LIVENESS_PATH, period=10, failures=3),
        "readinessProbe": _probe(READINESS_PATH, period=5, failures=2),
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if secret_name:
        # optional: a model baked into the image needs no credentials, and the pod must still start
        container["envFrom"] = [{"secretRef": {"name": secret_name, "optional": True}}]
    return container


def manifests(name: str, image: str, model_uri: str | None = None, *, namespace: str | None = None,
              replicas: int = 2, min_replicas: int = 1, max_replicas: int = 5, target_cpu: int = 70,
              resources: Resources | None = None, secret_name: str | None = None,
              port: int = CONTAINER_PORT) -> dict[str, dict[str, Any]]:
    """File name -> Kubernetes object: the Deployment, Service and HPA, and ``kserve/inferenceservice.yaml``."""
    name = kubernetes_name(name)
    if not 1 <= min_replicas <= max_replicas:
        raise ConfigurationError(f"Replicas: need 1 <= min ({min_replicas}) <= max ({max_replicas}).")
    if not 1 <= target_cpu <= 100:
        raise ConfigurationError(f"--target-cpu {target_cpu} must be a percentage between 1 and 100.")
    res = resources or Resources()
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/component": "model-server",
              "app.kubernetes.io/managed-by": "conveyor"}
    meta: dict[str, Any] = {"name": name, "labels": labels}
    if namespace:
        meta["namespace"] = kubernetes_name(namespace)
    container = serving_container(name, image, model_uri, res, secret_name, port)
    pod_spec = {"containers": [container], "volumes": [{"name": "tmp", "emptyDir": {}}],
                "securityContext": {"runAsNonRoot": True, "fsGroup": 1000}, "terminationGracePeriodSeconds": 30}
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
        "spec": {"replicas": max(min_replicas, min(replicas, max_replicas)),
                 "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                 "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                 "template": {"metadata": {"labels": labels}, "spec": pod_spec}},
    }
    service = {
        "apiVersion": "v1", "kind": "Service", "metadata": meta,
        "spec": {"type": "ClusterIP", "selector": {"app.kubernetes.io/name": name},
                 "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]},
    }
    hpa = {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": meta,
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                 "minReplicas": min_replicas, "maxReplicas": max_replicas,
                 "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                     "type": "Utilization", "averageUtilization": target_cpu}}}]},
    }
    kserve_container = {**container, "name": "kserve-container",   # the name KServe gives its predictor
                        "env": [e for e in container.get("env", []) if e["name"] != "PORT"]}
    if not kserve_container["env"]:
        del kserve_container["env"]
    inference_service = {
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": meta,
        "spec": {"predictor": {"minReplicas": min_replicas, "maxReplicas": max_replicas,
                               "containers": [kserve_container], "volumes": [{"name": "tmp", "emptyDir": {}}]}},
    }
    return {"deployment.yaml": deployment, "service.yaml": service, "hpa.yaml": hpa,
            "kserve/inferenceservice.yaml": inference_service}


def write_manifests(out_dir: str | Path, image: str, model_uri: str | None = None, *, name: str = "model-server",
                    **options: Any) -> list[Path]:
    """Write the manifests under ``out_dir`` (``kubectl apply -f out_dir``; KServe: ``-f out_dir/kserve``).

    ``model_uri`` (a gs://, s3://, az:// bundle) replaces the image's own bundle; ``options`` are those
    of ``manifests`` (namespace, replicas, min_replicas, max_replicas, target_cpu, resources, secret_name).
    """
    out = Path(out_dir)
    written = []
    for rel, obj in manifests(name, image, model_uri, **options).items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("# Written by conveyor build-image; write it again rather than edit it.\n"
                        + to_yaml(obj))
        written.append(path)
    return written


# --- the Kubernetes shapes of a task's resources, shared by the targets that run pods --------------

GPU_RESOURCE = "nvidia.com/gpu"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"


def resources(task: Any) -> dict[str, dict[str, str]]:
    """Kubernetes requests and limits: CPU requested, memory requested and limited, GPUs limited."""
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if task.cpus is not None:
        requests["cpu"] = cpu_quantity(task.cpus)
    if task.memory_bytes is not None:
        requests["memory"] = limits["memory"] = memory_quantity(task.memory_bytes)
    if task.gpus:
        limits[GPU_RESOURCE] = str(task.gpus)
    return {k: v for k, v in (("requests", requests), ("limits", limits)) if v}


def cpu_quantity(cpus: float) -> str:
    """``1`` -> ``"1"``, ``0.5`` -> ``"500m"`` (Kubernetes CPU quantities)."""
    return str(int(cpus)) if float(cpus).is_integer() else f"{round(cpus * 1000)}m"


def memory_quantity(n: int) -> str:
    """Bytes as the largest exact binary unit (``268435456`` -> ``"256Mi"``): never rounded."""
    for unit, size in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if n and n % size == 0:
            return f"{n // size}{unit}"
    return str(n)
