"""``conveyor models export``, ``conveyor serve-container`` and ``conveyor build-image``: a model that serves
without a metadata database, the container entry point that serves it, and the image around it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from conveyor.cli.output import console, print_json

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _client() -> Any:
    from conveyor.runtime.client import Client

    return Client()


def export_model(ref: Annotated[str, typer.Argument(help="NAME:VERSION or NAME@ALIAS")],
                 dest: Annotated[str, typer.Argument(help="A folder, an fsspec URL (s3://, gs://, az://), or a "
                                                          "name ending in .tar.gz (SageMaker's ModelDataUrl).")],
                 as_json: JsonOpt = False) -> None:
    """Write a model version as a bundle that serves without a metadata database (bytes verified, manifest last)."""
    from conveyor.serving.bundle import export_bundle

    manifest = export_bundle(_client(), ref, dest)
    if as_json:
        print_json(manifest)
        return
    model, art = manifest["model"], manifest["artifact"]
    console().print(f"Exported {model['name']}:{model['version']} ({art['content_hash']}, {manifest['flavor']}, "
                    f"{art['size']} bytes) to {dest}.\nServe it: `conveyor serve-container --platform kubernetes` "
                    f"with CONVEYOR_MODEL_URI={dest}, or `conveyor build-image {model['name']}:{model['version']} "
                    "--image IMAGE -o DIR` for an image with it inside.", highlight=False, soft_wrap=True)


def serve_container(mode: Annotated[Optional[str], typer.Argument(  # noqa: UP007
                        help="'serve', as SageMaker runs the image (`docker run IMAGE serve`).")] = None,
                    platform: Annotated[Optional[str], typer.Option(  # noqa: UP007
                        help="sagemaker, vertex, azureml or kubernetes (default: told from the environment).")] = None,
                    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "0.0.0.0",
                    port: Annotated[Optional[int], typer.Option(  # noqa: UP007
                        help="Port (default: the platform's: 8080, AIP_HTTP_PORT, 5001 on Azure ML, PORT).")] = None,
                    model_dir: Annotated[Optional[str], typer.Option(  # noqa: UP007
                        help="Read SageMaker's model from here instead of /opt/ml/model.")] = None,
                    access_log: Annotated[bool, typer.Option(help="JSON access log on stderr.")] = True) -> None:
    """Serve the model bundle as SageMaker, Vertex AI, Azure ML or Kubernetes runs a custom container."""
    from conveyor.serving.standalone import serve_container as run

    run(mode, platform=platform, host=host, port=port, model_dir=model_dir, access_log=access_log)


def next_commands(image: str, out: Path, name: str, manifest: dict[str, Any]) -> list[str]:
    """What to run after ``build-image``: build and push, then deploy on each platform."""
    from conveyor.export.kubernetes import kubernetes_name
    from conveyor.serving.platforms import AZUREML_PORT

    model = f"{manifest['model']['name']}:{manifest['model']['version']}"
    k8s = kubernetes_name(name)
    return [
        f"docker build -t {image} {out}",
        f"docker push {image}",
        f"kubectl apply -f {out / 'kubernetes'}            # Deployment, Service, HorizontalPodAutoscaler",
        f"kubectl apply -f {out / 'kubernetes' / 'kserve'}     # or a KServe InferenceService",
        f"conveyor models export {model} s3://BUCKET/{k8s}/model.tar.gz   # SageMaker (optional: the image has it)",
        f"aws sagemaker create-model --model-name {k8s} --execution-role-arn ROLE_ARN "
        f"--primary-container Image={image},ModelDataUrl=s3://BUCKET/{k8s}/model.tar.gz",
        f"gcloud ai models upload --region REGION --display-name {k8s} --container-image-uri {image} "
        "--container-ports 8080 --container-health-route /health --container-predict-route /predict"
        f"   # add --artifact-uri gs://BUCKET/{k8s} after `conveyor models export {model} gs://BUCKET/{k8s}`",
        f"az ml environment create --name {k8s} --image {image} --set inference_config.liveness_route.path=/ "
        f"inference_config.liveness_route.port={AZUREML_PORT} inference_config.readiness_route.path=/readyz "
        f"inference_config.readiness_route.port={AZUREML_PORT} inference_config.scoring_route.path=/score "
        f"inference_config.scoring_route.port={AZUREML_PORT}",
    ]


def build_image(ref: Annotated[str, typer.Argument(help="NAME:VERSION or NAME@ALIAS")],
                image: Annotated[str, typer.Option("--image", help="The image's name, e.g. "
                                                   "registry.example.com/churn:3.")],
                out: Annotated[Path, typer.Option("--output", "-o", help="Folder for the build context.")],
                base_image: Annotated[Optional[str], typer.Option(  # noqa: UP007
                    help="Base image (default: python:X.Y-slim of the training run's Python).")] = None,
                name: Annotated[Optional[str], typer.Option(  # noqa: UP007
                    help="Kubernetes name (default: the model's).")] = None,
                model_uri: Annotated[Optional[str], typer.Option(  # noqa: UP007
                    help="Serve this bundle URL on Kubernetes instead of the image's own.")] = None,
                secret: Annotated[Optional[str], typer.Option(  # noqa: UP007
                    help="Secret whose keys become the container's environment (store credentials).")] = None,
                namespace: Annotated[Optional[str], typer.Option(help="Kubernetes namespace.")] = None,  # noqa: UP007
                min_replicas: Annotated[int, typer.Option(help="Fewest replicas.")] = 1,
                max_replicas: Annotated[int, typer.Option(help="Most replicas.")] = 5,
                cpu: Annotated[str, typer.Option(help="CPU request.")] = "500m",
                memory: Annotated[str, typer.Option(help="Memory request.")] = "1Gi",
                as_json: JsonOpt = False) -> None:
    """Write the serving image's Dockerfile and build context, and its Kubernetes and KServe manifests."""
    from conveyor.export.container import build_serving_context
    from conveyor.export.kubernetes import Resources, write_manifests

    built = build_serving_context(_client(), ref, out, image, base_image=base_image,
                                  stores=tuple({"gs", *([model_uri.split("://", 1)[0]] if model_uri and "://" in
                                                        model_uri else [])}))
    k8s_name = name or built.manifest["model"]["name"]
    files = write_manifests(out / "kubernetes", image, model_uri, name=k8s_name, namespace=namespace,
                            min_replicas=min_replicas, max_replicas=max_replicas, secret_name=secret,
                            resources=Resources(cpu=cpu, memory=memory))
    commands = next_commands(image, out, k8s_name, built.manifest)
    if as_json:
        print_json({"context": str(out), "dockerfile": str(out / "Dockerfile"), "manifests": [str(f) for f in files],
                    "next": commands})
        return
    model = built.manifest["model"]
    console().print(f"Wrote the serving image of {model['name']}:{model['version']} to {out} (Dockerfile, "
                    f"{len(built.spec.requirements)} pinned requirements, the bundle) and {len(files)} manifests.\n"
                    "Next:", highlight=False, soft_wrap=True)
    for line in commands:
        console().print(f"  {line}", highlight=False, soft_wrap=True, markup=False)
