"""Check an InferenceService against KServe's own SDK models (run inside the kserve venv).

Every key must be an attribute the models declare (KServe's for the InferenceService, Kubernetes'
for the containers, probes and volumes they embed), every value of the declared kind; the paths
of whatever is unknown or ill-typed are printed and the exit code is 1.
"""

import re
import sys

import kserve.models
import kubernetes.client.models
import yaml

PRIMITIVES = {"str": (str,), "int": (int,), "bool": (bool,), "float": (int, float), "object": (object,),
              "datetime": (str,), "date": (str,)}


def model_class(name):
    for module in (kserve.models, kubernetes.client.models):
        found = getattr(module, name, None)
        if found is not None:
            return found
    return None


def check(value, kind, path, problems):
    kind = kind.strip()
    for pattern in (r"Optional\[(.*)\]$",):
        m = re.match(pattern, kind)
        if m:
            kind = m.group(1)
    m = re.match(r"(?:list|List)\[(.*)\]$", kind)
    if m:
        if not isinstance(value, list):
            problems.append(f"{path}: expected a list ({kind})")
            return
        for i, item in enumerate(value):
            check(item, m.group(1), f"{path}[{i}]", problems)
        return
    m = re.match(r"(?:dict\(|Dict\[)[^,]+,\s*(.*)[)\]]$", kind)
    if m:
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a mapping ({kind})")
            return
        for key, item in value.items():
            check(item, m.group(1), f"{path}.{key}", problems)
        return
    if kind in PRIMITIVES:
        if isinstance(value, bool) and kind in ("int", "float"):
            problems.append(f"{path}: expected {kind}, got a boolean")
        elif not isinstance(value, PRIMITIVES[kind]):
            problems.append(f"{path}: expected {kind}, got {type(value).__name__}")
        return
    cls = model_class(kind)
    if cls is None:
        if kind in ("ResourceQuantity", "IntOrString"):       # quantities and ports: text or numbers
            if not isinstance(value, (str, int, float)):
                problems.append(f"{path}: expected a {kind}")
            return
        problems.append(f"{path}: KServe's models have no type {kind!r}")
        return
    if not isinstance(value, dict):
        problems.append(f"{path}: expected an object ({kind})")
        return
    by_json = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    for key, item in value.items():
        attr = by_json.get(key)
        if attr is None:
            problems.append(f"{path}.{key}: not a field of {kind}")
            continue
        check(item, cls.openapi_types[attr], f"{path}.{key}", problems)


doc = yaml.safe_load(open(sys.argv[1]))
problems = []
if (doc.get("apiVersion"), doc.get("kind")) != ("serving.kserve.io/v1beta1", "InferenceService"):
    problems.append("$: not a serving.kserve.io/v1beta1 InferenceService")
check(doc, "V1beta1InferenceService", "$", problems)
if problems:
    print("\n".join(problems))
    sys.exit(1)
print("ok", len(doc["spec"]["predictor"]["containers"]), "container(s)")
