"""The serving container as each cloud runs it: a real ``conveyor serve-container`` process with exactly the
environment that cloud sets (no CONVEYOR_* variable, no metadata database), its model fetched from the
matching emulator, called with the clients the protocol tests use."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conveyor.serving.bundle import export_bundle
from tests.conftest import free_port
from tests.serving.conftest import fitted_pipeline

pytestmark = pytest.mark.slow
CONVEYOR = str(Path(sys.executable).parent / "conveyor")


class ContainerProcess:
    """``conveyor serve-container ARGS`` with ``env`` as its whole environment (plus PATH, HOME and LANG)."""

    def __init__(self, *args: str, env: dict[str, str], home: Path) -> None:
        self.log = tempfile.TemporaryFile()
        base = {"PATH": os.environ["PATH"], "HOME": str(home), "LANG": "C.UTF-8"}
        self.proc = subprocess.Popen([CONVEYOR, "serve-container", *args], env={**base, **env}, cwd=home,
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def wait_ready(self, url: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the container exited ({self.proc.returncode}): {self.output()[-3000:]}"
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"the container did not become healthy at {url}: {self.output()[-3000:]}")

    def wait_exit(self, timeout: float = 120) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        self.log.close()


@pytest.fixture
def container(tmp_path: Path) -> Iterator:
    started: list[ContainerProcess] = []

    def start(*args: str, env: dict[str, str]) -> ContainerProcess:
        home = tmp_path / f"container-{len(started)}"
        home.mkdir()
        p = ContainerProcess(*args, env=env, home=home)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


@pytest.fixture
def registered(client):
    """A registered scikit-learn pipeline (with a categorical column) and a few rows to score."""
    model, X = fitted_pipeline()
    v = client.registry.register("churn", model, metrics={"auc": 0.9}, data=X)
    return client, f"churn:{v.version}", model, X.head(8)


def _export(client, ref: str, dest: str, env: dict[str, str]) -> dict:
    """``conveyor models export`` as a user runs it, against the store the test's client uses."""
    out = subprocess.run([CONVEYOR, "models", "export", ref, dest, "--json"], capture_output=True, text=True,
                         env={**os.environ, **env, "CONVEYOR_HOME": str(client.settings.home)}, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _records(X) -> list[dict]:
    return X.to_dict(orient="records")


def test_sagemaker_serves_the_model_data_it_unpacked_from_s3(registered, s3_emulator, container,
                                                             tmp_path: Path) -> None:
    import boto3

    client, ref, model, X = registered
    bucket = f"cv-{uuid.uuid4().hex[:12]}"
    s3 = boto3.client("s3", endpoint_url=s3_emulator.url, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.create_bucket(Bucket=bucket)
    manifest = _export(client, ref, f"s3://{bucket}/churn/model.tar.gz", s3_emulator.environment)
    # What SageMaker does with ModelDataUrl: download the tarball and unpack it into /opt/ml/model.
    model_dir = tmp_path / "opt" / "ml" / "model"
    model_dir.mkdir(parents=True)
    tarball = tmp_path / "model.tar.gz"
    s3.download_file(bucket, "churn/model.tar.gz", str(tarball))
    with tarfile.open(tarball) as tar:
        tar.extractall(model_dir, filter="data")
    port = free_port()
    proc = container("serve", "--model-dir", str(model_dir), env={"SAGEMAKER_BIND_TO_PORT": str(port)})
    url = f"http://127.0.0.1:{port}"
    proc.wait_ready(f"{url}/ping")
    expected = model.predict(X).tolist()
    sm = boto3.client("sagemaker-runtime", endpoint_url=url, region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    out = sm.invoke_endpoint(EndpointName="churn", Body=X.to_csv(header=False, index=False), ContentType="text/csv",
                             Accept="application/json")
    assert json.loads(out["Body"].read()) == {"predictions": expected}
    with httpx.Client(base_url=url) as http:        # what the SageMaker host itself calls
        assert http.get("/ping").json() == {"ready": True}
        r = http.post("/invocations", json={"instances": _records(X)})
        assert r.status_code == 200, r.text
        assert r.json() == {"predictions": expected}
        assert r.headers["x-conveyor-model"] == ref
    assert manifest["artifact"]["content_hash"] in proc.output()


def test_vertex_reads_the_model_from_aip_storage_uri_on_gcs(registered, gcs_emulator, container,
                                                            monkeypatch) -> None:
    import fsspec

    client, ref, model, X = registered
    bucket = f"cv-{uuid.uuid4().hex[:12]}"
    for key, value in gcs_emulator.environment.items():
        monkeypatch.setenv(key, value)
    fsspec.filesystem("gs", skip_instance_cache=True).mkdir(bucket)
    export_bundle(client, ref, f"gs://{bucket}/models/churn")      # the CLI's own run is the SageMaker test's
    port = free_port()
    # Vertex AI's variables, as it sets them for a deployed model; the emulator's stand in for the
    # credentials a Vertex container gets from its metadata server.
    env = {"AIP_MODE": "PREDICTION", "AIP_MODE_VERSION": "1.0.0", "AIP_HTTP_PORT": str(port),
           "AIP_HEALTH_ROUTE": "/v1/endpoints/123/deployedModels/456",
           "AIP_PREDICT_ROUTE": "/v1/endpoints/123/deployedModels/456:predict",
           "AIP_STORAGE_URI": f"gs://{bucket}/models/churn", "AIP_DEPLOYED_MODEL_ID": "456",
           "AIP_ENDPOINT_ID": "123", "AIP_PROJECT_NUMBER": "1234567890", "AIP_MACHINE_TYPE": "n1-standard-2",
           **gcs_emulator.environment}
    proc = container(env=env)
    url = f"http://127.0.0.1:{port}"
    proc.wait_ready(f"{url}/v1/endpoints/123/deployedModels/456")
    with httpx.Client(base_url=url) as http:
        r = http.post("/v1/endpoints/123/deployedModels/456:predict", json={"instances": _records(X),
                                                                             "parameters": {}})
        assert r.status_code == 200, r.text
        assert r.json()["predictions"] == model.predict(X).tolist()
        r = http.post("/v1/endpoints/123/deployedModels/456:predict", json={"instances": X.values.tolist()})
        assert r.json()["predictions"] == model.predict(X).tolist()
    assert f"gs://{bucket}/models/churn" in proc.output()


def test_azureml_serves_the_model_under_azureml_model_dir(registered, azure_emulator, container,
                                                          tmp_path: Path, monkeypatch) -> None:
    import fsspec

    client, ref, model, X = registered
    container_name = f"cv-{uuid.uuid4().hex[:12]}"
    for key, value in azure_emulator.environment.items():
        monkeypatch.setenv(key, value)
    az = fsspec.filesystem("az", skip_instance_cache=True)
    az.mkdir(container_name)
    export_bundle(client, ref, f"az://{container_name}/churn-bundle")
    # What Azure ML does with a registered model folder: copy it under AZUREML_MODEL_DIR, one folder down.
    model_dir = tmp_path / "azureml-models" / "churn" / "1"
    az.get(f"{container_name}/churn-bundle", str(model_dir / "churn-bundle"), recursive=True)
    port = free_port()
    env = {"AZUREML_MODEL_DIR": str(model_dir), "AML_APP_ROOT": str(tmp_path / "azureml-app")}
    proc = container("--port", str(port), env=env)      # 5001 on Azure; a free port here
    url = f"http://127.0.0.1:{port}"
    proc.wait_ready(f"{url}/")
    with httpx.Client(base_url=url) as http:
        assert http.get("/").json()["live"] is True
        r = http.post("/score", json={"input_data": {"columns": list(X.columns), "index": list(range(len(X))),
                                                     "data": X.values.tolist()}})
        assert r.status_code == 200, r.text
        assert r.json() == model.predict(X).tolist()
        assert http.post("/score", json={"data": _records(X)}).json() == model.predict(X).tolist()
        assert http.get("/readyz").status_code == 200


def test_a_changed_bundle_is_refused_before_anything_is_loaded(registered, container, tmp_path: Path) -> None:
    client, ref, _, _ = registered
    bundle = tmp_path / "azureml-models" / "churn" / "1" / "model"
    manifest = export_bundle(client, ref, str(bundle))
    obj = bundle / manifest["artifact"]["path"]
    data = bytearray(obj.read_bytes())
    data[len(data) // 2] ^= 0xFF                      # same size, one byte changed
    obj.write_bytes(bytes(data))
    proc = container("--port", str(free_port()), env={"AZUREML_MODEL_DIR": str(bundle.parent)})
    assert proc.wait_exit() == 4
    out = proc.output()
    assert "was refused" in out and str(obj) in out and manifest["artifact"]["content_hash"] in out
    assert f"conveyor models export {ref} DEST" in out
    assert "Traceback" not in out


def test_sagemaker_without_model_data_names_the_folder_and_the_fix(container, tmp_path: Path) -> None:
    empty = tmp_path / "opt" / "ml" / "model"
    empty.mkdir(parents=True)
    proc = container("serve", "--model-dir", str(empty), env={})
    assert proc.wait_exit() == 6
    out = proc.output()
    assert str(empty) in out and "ModelDataUrl" in out and "model.tar.gz" in out
    assert "Traceback" not in out
