"""Run inside the kfp venv: read an exported IR with KFP's own libraries and print what they parsed.

``python kfp_inspect.py pipeline.yaml`` parses the first YAML document strictly into the
``PipelineSpec`` protobuf (``ignore_unknown_fields=False``), a second one into ``PlatformSpec`` and
each Kubernetes executor config into kfp-kubernetes' ``KubernetesExecutorConfig``, loads the file
with ``kfp.components.load_component_from_file``, and prints a JSON summary: every DAG's tasks with
their component, dependencies, trigger condition, iterator and retry policy, and every executor.
"""

from __future__ import annotations

import json
import sys

import yaml
from google.protobuf import json_format
from kfp import components
from kfp.pipeline_spec import pipeline_spec_pb2


def main(path: str) -> None:
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    spec = json_format.ParseDict(docs[0], pipeline_spec_pb2.PipelineSpec(), ignore_unknown_fields=False)
    platforms = {}
    if len(docs) > 1:
        platform = json_format.ParseDict(docs[1], pipeline_spec_pb2.PlatformSpec(), ignore_unknown_fields=False)
        from kfp.kubernetes import kubernetes_executor_config_pb2 as k8s

        for name, single in platform.platforms.items():
            for executor, config in single.deployment_spec.executors.items():
                parsed = json_format.ParseDict(json_format.MessageToDict(config), k8s.KubernetesExecutorConfig(),
                                               ignore_unknown_fields=False)
                platforms.setdefault(name, {})[executor] = json_format.MessageToDict(parsed)
    loaded = components.load_component_from_file(path)
    dags = {"root": spec.root}
    dags.update({name: c for name, c in spec.components.items() if c.WhichOneof("implementation") == "dag"})
    summary = {
        "name": spec.pipeline_info.name,
        "loaded_name": loaded.name,
        "loaded_inputs": sorted(loaded.component_spec.inputs or {}),
        "inputs": {k: {"type": pipeline_spec_pb2.ParameterType.ParameterTypeEnum.Name(v.parameter_type),
                       "default": json_format.MessageToDict(v.default_value) if v.HasField("default_value") else None}
                   for k, v in spec.root.input_definitions.parameters.items()},
        "dags": {},
        "components": {name: c.executor_label for name, c in spec.components.items() if c.executor_label},
        "outputs": {name: sorted(c.output_definitions.parameters) for name, c in spec.components.items()},
        "executors": {},
        "platforms": platforms,
    }
    for name, comp in dags.items():
        tasks = {}
        for tname, t in comp.dag.tasks.items():
            entry = {"component": t.component_ref.name, "after": sorted(t.dependent_tasks),
                     "condition": t.trigger_policy.condition, "cache": t.caching_options.enable_cache,
                     "inputs": json_format.MessageToDict(t.inputs).get("parameters", {})}
            if t.HasField("parameter_iterator"):
                entry["iterator"] = json_format.MessageToDict(t.parameter_iterator)
            if t.HasField("retry_policy"):
                entry["retry"] = json_format.MessageToDict(t.retry_policy)
            tasks[tname] = entry
        summary["dags"][name] = tasks
    for name, ex in spec.deployment_spec.fields["executors"].struct_value.fields.items():
        summary["executors"][name] = json_format.MessageToDict(ex.struct_value)["container"]
    print(json.dumps(summary))


if __name__ == "__main__":
    main(sys.argv[1])
