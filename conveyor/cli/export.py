"""``conveyor export``: one pipeline, compiled for a cloud orchestrator, with its image's build context."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from conveyor.cli.output import console, parse_params, print_json

ParamOpt = Annotated[Optional[list[str]], typer.Option("-p", "--param", help="Pipeline parameter KEY=VALUE; it becomes the exported default (repeatable).")]  # noqa: UP007
PairOpt = Optional[list[str]]  # noqa: UP007


def export(
    ref: Annotated[str, typer.Argument(help="The pipeline: FILE.py:NAME or module:NAME.")],
    target: Annotated[str, typer.Option("--target", "-t", help="kfp, vertex, sagemaker, azureml, airflow, argo or stepfunctions.")],
    image: Annotated[str, typer.Option("--image", help="The image the tasks run (built from the written context).")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Folder to write the definition and the image's build context to.")],
    param: ParamOpt = None,
    resume: Annotated[Optional[str], typer.Option("--resume", help="A run id: the exported run reuses every step that finished in it.")] = None,  # noqa: UP007
    artifact_root: Annotated[Optional[str], typer.Option("--artifact-root", help="The shared artifact root the tasks use (s3://, gs://, az://); default: CONVEYOR_ARTIFACT_ROOT.")] = None,  # noqa: UP007
    metadata_url: Annotated[Optional[str], typer.Option("--metadata-url", help="A database the tasks record to (no password: pass that through the target's secrets). Without it, records go beside the outputs.")] = None,  # noqa: UP007
    allow_pickle: Annotated[bool, typer.Option("--allow-pickle", help="Let tasks load pickled artifacts (models) from the shared root: CONVEYOR_ALLOW_PICKLE=true.")] = False,
    option: Annotated[PairOpt, typer.Option("--option", help="A target option KEY=VALUE (repeatable).")] = None,
    instance_type: Annotated[PairOpt, typer.Option("--instance-type", help="[STEP=]TYPE: the instance type for a step, or for all (repeatable).")] = None,
    project_dir: Annotated[Optional[Path], typer.Option("--project-dir", help="The folder copied into the image (default: the pipeline file's folder).")] = None,  # noqa: UP007
    workdir: Annotated[Optional[str], typer.Option("--workdir", help="Where the project is when tasks run (default: the image's copy).")] = None,  # noqa: UP007
    python: Annotated[str, typer.Option("--python", help="The interpreter tasks run (default: the image's `python`).")] = "python",
    as_json: Annotated[bool, typer.Option("--json", help="Print what was written as JSON.")] = False,
) -> None:
    """Compile a pipeline for a cloud orchestrator; print the commands that build and submit it."""
    from conveyor.export import export as run_export

    options = parse_params(option or [])
    types: dict[str, str] = {}
    for item in instance_type or []:
        step, sep, kind = item.rpartition("=")
        types[step if sep else "*"] = kind
    result = run_export(ref, target, image=image, out=out, params=parse_params(param or []), from_text=True,
                        resume=resume, artifact_root=artifact_root, metadata_url=metadata_url,
                        allow_pickle=allow_pickle, options={k: str(v) for k, v in options.items()},
                        instance_types=types, project_dir=project_dir, workdir=workdir, python=python)
    if as_json:
        print_json({"target": result.target, "files": [str(f) for f in result.files], "commands": result.commands,
                    "tasks": list(result.plan.tasks), "shape": result.plan.shape})
        return
    c = console()
    c.print(f"Exported [bold]{result.plan.pipeline}[/] for [bold]{target}[/]: {len(result.plan.tasks)} tasks, "
            f"{len(result.files)} files in {out}")
    c.print("Next:")
    for cmd in result.commands:
        c.print(f"  {cmd}", highlight=False, soft_wrap=True)
