"""Open Inference Protocol v2 (KServe, Triton, MLServer), REST with JSON and binary tensors.

``{name}`` is an endpoint. Inputs are one tensor per column (shape ``[n]`` or ``[n, 1]``), or one
``[n, k]`` tensor whose columns follow the signature. The binary tensor extension is accepted on
input (``Inference-Header-Content-Length``) and produced for outputs that ask for it.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import conveyor
from conveyor.errors import InvalidRequest, NotFound
from conveyor.serving.protocols.base import guarded, json_response
from conveyor.serving.schema import RowBlock

TO_NUMPY = {"BOOL": "bool", "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64",
            "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64", "FP16": "float16",
            "FP32": "float32", "FP64": "float64", "BYTES": "object"}
FROM_DTYPE = {"bool": "BOOL", "int8": "INT8", "int16": "INT16", "int32": "INT32", "int64": "INT64",
              "uint8": "UINT8", "float32": "FP32", "float64": "FP64", "string": "BYTES", "category": "BYTES"}


def datatype_of(dtype: str) -> str:
    return FROM_DTYPE.get(dtype, "BYTES")


def _decode_binary(raw: bytes, datatype: str) -> np.ndarray:
    if datatype != "BYTES":
        return np.frombuffer(raw, dtype=TO_NUMPY[datatype])
    out, i = [], 0
    while i < len(raw):
        (n,) = struct.unpack_from("<I", raw, i)
        out.append(raw[i + 4:i + 4 + n].decode())
        i += 4 + n
    return np.asarray(out, dtype=object)


def parse_request(body: bytes, header_length: str | None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The JSON header and each input as an array (shaped)."""
    binary = b""
    if header_length:
        n = int(header_length)
        head, binary = body[:n], body[n:]
    else:
        head = body
    try:
        req = orjson.loads(head)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The inference request is not valid JSON: {exc}.", field="body") from None
    inputs = req.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidRequest("An inference request needs a non-empty 'inputs' list.", field="inputs")
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for i, t in enumerate(inputs):
        for key in ("name", "shape", "datatype"):
            if key not in t:
                raise InvalidRequest(f"Input {i} lacks '{key}'.", field=f"inputs[{i}].{key}")
        name, shape, dtype = t["name"], t["shape"], t["datatype"]
        if dtype not in TO_NUMPY:
            raise InvalidRequest(f"Input '{name}' has unknown datatype {dtype!r}.", field=f"inputs[{i}].datatype")
        size = (t.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            arr = _decode_binary(binary[offset:offset + size], dtype)
            offset += size
        else:
            data = t.get("data")
            if data is None:
                raise InvalidRequest(f"Input '{name}' has no 'data'.", field=f"inputs[{i}].data")
            arr = np.asarray(data, dtype=None if dtype == "BYTES" else TO_NUMPY[dtype])
            if arr.dtype.kind in "US":
                arr = arr.astype(object)
        expected = int(np.prod(shape)) if shape else 1
        if arr.size != expected:
            raise InvalidRequest(f"Input '{name}' has {arr.size} values but shape {shape} needs {expected}.",
                                 field=f"inputs[{i}].shape")
        arrays[name] = arr.reshape(shape)
    return req, arrays


def to_columns(arrays: dict[str, np.ndarray], names: list[str] | None) -> dict[str, list[Any]] | RowBlock:
    if len(arrays) == 1:
        (only,) = arrays.values()
        if only.ndim == 2 and only.shape[1] > 1:
            if names is None or len(names) != only.shape[1]:
                raise InvalidRequest(f"A [{only.shape[0]}, {only.shape[1]}] tensor needs a signature with "
                                     f"{only.shape[1]} columns" + (f"; the model expects {names}" if names else "")
                                     + ".", field="inputs[0].shape")
            return RowBlock(only, names, "inputs[0]")
    out = {}
    for name, arr in arrays.items():
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 1:
            raise InvalidRequest(f"Input '{name}' must have shape [n] or [n, 1] when sent one column per tensor.",
                                 field=name)
        out[name] = arr.tolist()
    return out


def render(req: dict[str, Any], pred: Any) -> Response:
    values = pred.values
    if values.dtype.kind in "OUS":
        datatype, flat = "BYTES", [str(v) for v in values.reshape(-1)]
    else:
        datatype = FROM_DTYPE.get(str(values.dtype), "FP64")
        flat = values.reshape(-1)
    requested = req.get("outputs") or []
    out_name = requested[0]["name"] if requested and "name" in requested[0] else "predict"
    binary = any((o.get("parameters") or {}).get("binary_data") for o in requested) or \
        (req.get("parameters") or {}).get("binary_data_output", False)
    head: dict[str, Any] = {"model_name": pred.endpoint, "model_version": str(pred.model.version),
                            "id": req.get("id", pred.request_id)}
    output: dict[str, Any] = {"name": out_name, "datatype": datatype, "shape": list(values.shape)}
    headers = {"X-Request-ID": pred.request_id}
    if binary:
        if datatype == "BYTES":
            raw = b"".join(struct.pack("<I", len(s.encode())) + s.encode() for s in flat)
        else:
            raw = np.ascontiguousarray(flat).tobytes()
        output["parameters"] = {"binary_data_size": len(raw)}
        head["outputs"] = [output]
        header = orjson.dumps(head)
        headers["Inference-Header-Content-Length"] = str(len(header))
        return Response(header + raw, media_type="application/octet-stream", headers=headers)
    output["data"] = flat if isinstance(flat, list) else flat.tolist()
    head["outputs"] = [output]
    return json_response(head, headers=headers)


def routes(service: Any, settings: Any) -> list[Route]:
    def endpoint_of(request: Request) -> str | None:
        return request.path_params.get("name")

    guard = guarded(service, "oip_v2", endpoint_of)

    def version_of(request: Request) -> int | None:
        v = request.path_params.get("version")
        if v is None:
            return None
        if not v.isdigit():
            raise InvalidRequest(f"Version {v!r} must be a number.", field="version")
        return int(v)

    @guard
    async def infer(request: Request) -> Response:
        name = endpoint_of(request)
        service.authorize(request.headers, name)
        req, arrays = parse_request(await request.body(), request.headers.get("inference-header-content-length"))
        route = service.route(name)
        sig = service.model(route.keys[0]).signature
        columns = to_columns(arrays, [c.name for c in sig.inputs] if sig else None)
        pred = service.predict(columns, endpoint=name, headers=request.headers, protocol="oip_v2",
                               version=version_of(request), request_id=req.get("id"), authorized=True)
        return render(req, pred)

    @guard
    async def metadata(request: Request) -> Response:
        route = service.route(endpoint_of(request))
        wanted = version_of(request)
        keys = [k for k in route.keys if wanted is None or k.version == wanted]
        if not keys:
            raise NotFound(f"Endpoint '{route.spec.name}' does not serve version {wanted}.")
        sig = service.model(keys[0]).signature
        inputs = [{"name": c.name, "datatype": datatype_of(c.dtype), "shape": [-1]} for c in sig.inputs] if sig else []
        return json_response({"name": route.spec.name, "versions": [str(k.version) for k in route.keys],
                              "platform": "conveyor", "inputs": inputs,
                              "outputs": [{"name": "predict", "datatype": "FP64", "shape": [-1]}]})

    @guard
    async def model_ready(request: Request) -> Response:
        route = service.route(endpoint_of(request))
        wanted = version_of(request)
        ok = any(k in service.models for k in route.keys if wanted is None or k.version == wanted)
        return json_response({"name": route.spec.name, "ready": ok}, 200 if ok else 503)

    async def live(request: Request) -> Response:
        return json_response({"live": True})

    async def ready(request: Request) -> Response:
        return json_response({"ready": service.ready}, 200 if service.ready else 503)

    async def server(request: Request) -> Response:
        return json_response({"name": "conveyor", "version": conveyor.__version__,
                              "extensions": ["binary_tensor_data"]})

    return [
        Route("/v2", server, methods=["GET"]),
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
        Route("/v2/models/{name}", metadata, methods=["GET"]),
        Route("/v2/models/{name}/versions/{version}", metadata, methods=["GET"]),
        Route("/v2/models/{name}/ready", model_ready, methods=["GET"]),
        Route("/v2/models/{name}/versions/{version}/ready", model_ready, methods=["GET"]),
        Route("/v2/models/{name}/infer", infer, methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}/infer", infer, methods=["POST"]),
    ]
