"""The server's OpenAPI description, built from the app's own routes (served at ``/openapi.json``).

Every route of the app appears, whoever added it: path parameters come from the route's path, the
request body from the handler's ``openapi_body`` (set with ``describe``), else "any JSON" for the
methods that take a body. The fuzzing suite reads this document, so a new route is fuzzed the day
it is added.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

import conveyor

BODY_METHODS = ("POST", "PUT", "PATCH")
ANY_JSON: dict[str, Any] = {"application/json": {"schema": {}}}
ERROR = {"type": "object", "required": ["error", "field"],
         "properties": {"error": {"type": "string"}, "field": {"type": "string"},
                        "request_id": {"type": "string"}}}


def describe(body: dict[str, Any], summary: str | None = None) -> Callable[[Any], Any]:
    """Attach a request body description (content type -> ``{"schema": ...}``) to a route handler."""
    def mark(fn: Any) -> Any:
        fn.openapi_body = body
        if summary:
            fn.openapi_summary = summary
        return fn
    return mark


def _routes(routes: Iterable[Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for route in routes:
        path = getattr(route, "path", None)
        if path is None:
            continue
        inner = getattr(route, "routes", None)
        if inner is not None and not hasattr(route, "endpoint"):     # a Mount: walk into it
            yield from _routes(inner, prefix + path)
        else:
            yield prefix + path, route


def openapi_document(routes: Iterable[Any]) -> dict[str, Any]:
    """OpenAPI 3.0 for ``routes`` (Starlette ``Route``/``Mount`` objects)."""
    paths: dict[str, dict[str, Any]] = {}
    for path, route in _routes(routes):
        clean = re.sub(r"{(\w+)(:\w+)?}", r"{\1}", path)
        params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
                  for n in re.findall(r"{(\w+)", clean)]
        endpoint = getattr(route, "endpoint", None)
        for method in sorted(getattr(route, "methods", None) or {"GET"}):
            if method == "HEAD":
                continue
            op: dict[str, Any] = {
                "operationId": f"{method.lower()}_{re.sub(r'[^A-Za-z0-9]+', '_', clean).strip('_') or 'root'}",
                "summary": getattr(endpoint, "openapi_summary", None) or (
                    (endpoint.__doc__ or "").strip().split("\n")[0] if endpoint else "") or clean,
                "responses": {"default": {"description": "A JSON answer; errors are {error, field, request_id}.",
                                          "content": {"application/json": {"schema": {}}}}},
            }
            if params:
                op["parameters"] = params
            if method in BODY_METHODS:
                op["requestBody"] = {"required": True, "content": getattr(endpoint, "openapi_body", ANY_JSON)}
            paths.setdefault(clean, {})[method.lower()] = op
    return {"openapi": "3.0.3", "info": {"title": "Conveyor serving", "version": conveyor.__version__},
            "paths": paths}


# Request bodies of the prediction routes, as their clients send them.
_TABLE = {"type": "array", "items": {"anyOf": [{"type": "array", "items": {}}, {"type": "object"}]}}
FRAME_BODY: dict[str, Any] = {"application/json": {"schema": {"anyOf": [
    {"type": "object", "properties": {"dataframe_split": {"type": "object", "properties": {
        "columns": {"type": "array", "items": {"type": "string"}}, "data": {"type": "array"}}}}},
    {"type": "object", "properties": {"dataframe_records": {"type": "array", "items": {"type": "object"}}}},
    {"type": "object", "properties": {"instances": _TABLE}},
    {"type": "object", "properties": {"inputs": {"anyOf": [{"type": "object"}, _TABLE]}}},
    {"type": "object", "properties": {"data": _TABLE}},
    {"type": "object", "properties": {"input_data": {"type": "object", "properties": {
        "columns": {"type": "array", "items": {"type": "string"}}, "data": {"type": "array"}}}}},
    _TABLE]}}}
CSV_BODY: dict[str, Any] = {"text/csv": {"schema": {"type": "string"}}}
OIP_BODY: dict[str, Any] = {"application/json": {"schema": {
    "type": "object", "required": ["inputs"], "properties": {
        "id": {"type": "string"},
        "inputs": {"type": "array", "items": {"type": "object", "required": ["name", "shape", "datatype"],
                                              "properties": {
                                                  "name": {"type": "string"},
                                                  "shape": {"type": "array", "items": {"type": "integer"}},
                                                  "datatype": {"type": "string", "enum": [
                                                      "BOOL", "INT32", "INT64", "FP32", "FP64", "BYTES"]},
                                                  "data": {"type": "array"},
                                                  "parameters": {"type": "object"}}}},
        "outputs": {"type": "array", "items": {"type": "object"}},
        "parameters": {"type": "object"}}}}}
