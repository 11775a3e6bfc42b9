"""``conveyor build-image``: the serving image's build context and its Kubernetes and KServe manifests.

No Docker daemon or cluster is reachable here, so the Dockerfile is read with ``dockerfile-parse``,
the manifests are checked by Kubernetes' own OpenAPI schemas (``kubernetes-validate``, strict) and by
KServe's own SDK models, and the image's entry point is run from the build context with the image's
environment, its probes called on the routes the manifests name.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from conveyor.errors import ConfigurationError
from conveyor.export.kubernetes import kubernetes_name, manifests, write_manifests
from tests.conftest import free_port
from tests.serving.conftest import fitted_pipeline

CONVEYOR = str(Path(sys.executable).parent / "conveyor")
K8S_VERSION = "1.30.0"


@pytest.fixture
def built(client, tmp_path: Path):
    """``conveyor build-image`` run as a user runs it, on a registered model."""
    model, X = fitted_pipeline()
    v = client.registry.register("churn", model, data=X)
    out = tmp_path / "image"
    done = subprocess.run([CONVEYOR, "build-image", f"churn:{v.version}", "--image", "registry.example.com/churn:1",
                           "-o", str(out), "--secret", "churn-store", "--json"], capture_output=True, text=True,
                          env={**os.environ, "CONVEYOR_HOME": str(client.settings.home)}, timeout=300)
    assert done.returncode == 0, done.stderr
    return out, json.loads(done.stdout), model, X.head(5)


def _yaml(path: Path):
    import yaml

    return yaml.safe_load(path.read_text())


def _dockerfile(context: Path):
    from dockerfile_parse import DockerfileParser

    parser = DockerfileParser(path=str(context / "Dockerfile"))
    return parser


@pytest.mark.slow
def test_build_image_writes_a_context_whose_entry_point_serves_the_probed_routes(built, tmp_path: Path) -> None:
    from importlib.metadata import version

    out, result, model, X = built
    parser = _dockerfile(out)
    assert parser.baseimage == f"python:{sys.version_info.major}.{sys.version_info.minor}-slim"
    instructions = parser.structure
    copies = [i["value"].split() for i in instructions if i["instruction"] == "COPY"]
    for source, _target in copies:
        assert (out / source).exists(), f"COPY {source}: not in the build context"
    entry = next(i["value"] for i in instructions if i["instruction"] == "ENTRYPOINT")
    assert json.loads(entry) == ["python", "-m", "conveyor.cli.main", "serve-container"]
    requirements = (out / "requirements.txt").read_text().split()
    assert all("==" in r for r in requirements) and f"scikit-learn=={version('scikit-learn')}" in requirements
    assert f"gcsfs=={version('gcsfs')}" in requirements               # Vertex AI reads AIP_STORAGE_URI with it
    assert not any(r.startswith("conveyor==") for r in requirements)  # copied as source: exactly this version
    assert (out / "src" / "conveyor" / "serving" / "standalone.py").exists()
    assert result["next"][0] == f"docker build -t registry.example.com/churn:1 {out}"
    assert any(c.startswith("aws sagemaker create-model") for c in result["next"])
    assert any(c.startswith("gcloud ai models upload") for c in result["next"])
    assert any(c.startswith("az ml environment create") for c in result["next"])

    # The image without Docker: its ENV with /opt/conveyor mapped into the context, its ENTRYPOINT.
    env = {k: v.replace("/opt/conveyor", str(out)) for k, v in parser.envs.items()}
    deployment = _yaml(out / "kubernetes" / "deployment.yaml")
    isvc = _yaml(out / "kubernetes" / "kserve" / "inferenceservice.yaml")
    pod = deployment["spec"]["template"]["spec"]["containers"][0]
    port = free_port()                                   # the cluster's 8080, on a port free here
    args = [sys.executable, *json.loads(entry)[1:]]      # the image's python is this one, with the pins installed
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(args, env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), **env,
                                           "PORT": str(port)}, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while True:
                assert proc.poll() is None, log.seek(0) or log.read().decode()[-3000:]
                try:
                    if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    assert time.monotonic() < deadline, "the image's entry point did not start"
                    time.sleep(0.2)
            containers = [pod, isvc["spec"]["predictor"]["containers"][0]]
            probes = [c[p]["httpGet"] for c in containers for p in ("startupProbe", "livenessProbe", "readinessProbe")]
            for probe in probes:
                assert probe["port"] == "http" and pod["ports"][0]["name"] == "http"
                r = httpx.get(f"{url}{probe['path']}", timeout=10)
                assert r.status_code == 200, (probe, r.text)
            import tritonclient.http as triton  # KServe's v2 protocol, with its own client

            tc = triton.InferenceServerClient(url=f"127.0.0.1:{port}")
            assert tc.is_server_ready() and tc.is_model_ready("churn")
            r = httpx.post(f"{url}/invocations", json={"instances": X.to_dict(orient="records")}, timeout=10)
            assert r.json()["predictions"] == model.predict(X).tolist()
            log.seek(0)
            assert str(out / "model") in log.read().decode()   # the bundle inside the image served
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


def test_manifests_pass_kubernetes_strict_schemas(tmp_path: Path) -> None:
    import kubernetes_validate

    files = write_manifests(tmp_path, "registry.example.com/churn:1", "s3://models/churn", name="churn",
                            secret_name="churn-store", namespace="ml", port=9000)
    plain = [f for f in files if f.parent == tmp_path]
    assert sorted(f.name for f in plain) == ["deployment.yaml", "hpa.yaml", "service.yaml"]
    kinds = set()
    for path in plain:
        obj = _yaml(path)
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        kinds.add((obj["apiVersion"], obj["kind"]))
    assert kinds == {("apps/v1", "Deployment"), ("v1", "Service"), ("autoscaling/v2", "HorizontalPodAutoscaler")}
    container = _yaml(tmp_path / "deployment.yaml")["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": "churn-store", "optional": True}}]
    assert {e["name"]: e["value"] for e in container["env"]} == {"PORT": "9000",
                                                                 "CONVEYOR_MODEL_URI": "s3://models/churn"}
    hpa = _yaml(tmp_path / "hpa.yaml")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "churn"}
    isvc = _yaml(tmp_path / "kserve" / "inferenceservice.yaml")
    assert "env" not in isvc["spec"]["predictor"]["containers"][0] or all(
        e["name"] != "PORT" for e in isvc["spec"]["predictor"]["containers"][0]["env"])   # Knative sets PORT


def test_the_schema_check_can_fail_and_bad_options_are_refused() -> None:
    import kubernetes_validate

    deployment = manifests("churn", "img:1")["deployment.yaml"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")        # a misspelled field
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    with pytest.raises(ConfigurationError, match="cannot be made a Kubernetes name"):
        kubernetes_name("___")
    with pytest.raises(ConfigurationError, match=r"1 <= min \(3\) <= max \(2\)"):
        manifests("churn", "img:1", min_replicas=3, max_replicas=2)
    assert kubernetes_name("Churn_Model.v2") == "churn-model-v2"


KSERVE = ["kserve==0.21.0"]
KSERVE_CHECK = Path(__file__).parent / "scripts" / "kserve_check.py"


@pytest.mark.slow
def test_the_inference_service_loads_into_kserve_models(tmp_path: Path) -> None:
    from tests.export.venvs import run_in, target_venv

    venv = target_venv("kserve", KSERVE)
    write_manifests(tmp_path, "registry.example.com/churn:1", "gs://models/churn", name="churn",
                    secret_name="churn-store", min_replicas=2, max_replicas=4)
    good = tmp_path / "kserve" / "inferenceservice.yaml"
    done = run_in(venv, [str(KSERVE_CHECK), str(good)])
    assert done.returncode == 0, done.stdout + done.stderr
    bad = tmp_path / "bad.yaml"                          # the check can fail: a field KServe does not have
    bad.write_text(good.read_text().replace("minReplicas", "minReplica"))
    done = run_in(venv, [str(KSERVE_CHECK), str(bad)])
    assert done.returncode == 1 and "$.spec.predictor.minReplica: not a field of V1beta1PredictorSpec" in done.stdout
