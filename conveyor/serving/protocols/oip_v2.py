"""Open Inference Protocol v2 (KServe, Triton, MLServer), REST with JSON and binary tensors.

``{name}`` is an endpoint. Inputs are one tensor per column (shape ``[n]`` or ``[n, 1]``), or one
``[n, k]`` tensor whose columns follow the signature. The binary tensor extension is accepted on
input (``Inference-Header-Content-Length``) and produced for outputs that ask for it.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import conveyor
from conveyor.errors import InvalidRequest, NotFound
from conveyor.serving.openapi import OIP_BODY, describe
from conveyor.serving.protocols.base import guarded, json_response, parsing, signature_names
from conveyor.serving.schema import RowBlock

TO_NUMPY = {"BOOL": "bool", "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64",
            "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64", "FP16": "float16",
            "FP32": "float32", "FP64": "float64", "BYTES": "object"}
FROM_DTYPE = {"bool": "BOOL", "int8": "INT8", "int16": "INT16", "int32": "INT32", "int64": "INT64",
              "uint8": "UINT8", "float32": "FP32", "float64": "FP64", "string": "BYTES", "category": "BYTES"}


def datatype_of(dtype: str) -> str:
    return FROM_DTYPE.get(dtype, "BYTES")


def _decode_binary(raw: bytes, datatype: str, field: str) -> np.ndarray:
    if datatype != "BYTES":
        itemsize = np.dtype(TO_NUMPY[datatype]).itemsize
        if len(raw) % itemsize:
            raise InvalidRequest(f"{len(raw)} bytes of binary data are not whole {datatype} values "
                                 f"({itemsize} bytes each).", field=field)
        return np.frombuffer(raw, dtype=TO_NUMPY[datatype])
    out, i = [], 0
    with parsing(field):
        while i < len(raw):
            (n,) = struct.unpack_from("<I", raw, i)
            if i + 4 + n > len(raw):
                raise InvalidRequest("A BYTES element runs past the end of the binary data.", field=field)
            out.append(raw[i + 4:i + 4 + n].decode())
            i += 4 + n
    return np.asarray(out, dtype=object)


def _from_json_data(data: Any, dtype: str, name: str, field: str) -> np.ndarray:
    """A tensor's JSON ``data`` as an array of its datatype; a value of another type is a 400, never a cast.

    One conversion with NumPy's own type detection: text, null, objects or booleans in a numeric
    tensor come out as a non-numeric array and are refused by name.
    """
    if not isinstance(data, list):
        data = [data]
    with parsing(field):
        arr = np.asarray(data)
    kind = arr.dtype.kind
    if dtype == "BYTES":
        return arr.astype(object) if kind in "US" else arr
    if dtype == "BOOL":
        if kind != "b":
            raise InvalidRequest(f"Input '{name}' is BOOL: 'data' must hold true/false values.", field=field)
        return arr
    if kind not in "iuf":
        flat = arr.reshape(-1).tolist()
        bad = next((v for v in flat if v is None or isinstance(v, bool | str | dict | list)), flat[0] if flat
                   else None)
        what = "null" if bad is None else f"{type(bad).__name__} {bad!r}"[:80]
        raise InvalidRequest(f"Input '{name}' is {dtype}: 'data' must hold numbers only, got {what}.", field=field)
    target = np.dtype(TO_NUMPY[dtype])
    if target.kind in "iu" and kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.floor(arr)):
            raise InvalidRequest(f"Input '{name}' is {dtype}: 'data' must hold whole numbers.", field=field)
    if target.kind in "iu":
        info = np.iinfo(target)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            raise InvalidRequest(f"Input '{name}' has values outside the range of {dtype}.", field=field)
    return arr.astype(target, copy=False)


def _header_length(value: str | None, body: bytes) -> int | None:
    if value is None:
        return None
    if not value.strip().isdigit() or int(value) > len(body):
        raise InvalidRequest(f"Inference-Header-Content-Length {value[:40]!r} must be a whole number of bytes, at "
                             f"most the body's {len(body)}.", field="inference-header-content-length")
    return int(value)


def parse_request(body: bytes, header_length: str | None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The JSON header and each input as an array (shaped); every malformed part is a 400 naming it."""
    binary = b""
    n = _header_length(header_length, body)
    if n is not None:
        head, binary = body[:n], body[n:]
    else:
        head = body
    try:
        req = orjson.loads(head)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The inference request is not valid JSON: {exc}.", field="body") from None
    if not isinstance(req, dict):
        raise InvalidRequest("An inference request is a JSON object with an 'inputs' list.", field="body")
    if req.get("id") is not None and not isinstance(req["id"], str):
        raise InvalidRequest("'id' must be a string.", field="id")
    _check_outputs(req)
    inputs = req.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidRequest("An inference request needs a non-empty 'inputs' list.", field="inputs")
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for i, t in enumerate(inputs):
        where = f"inputs[{i}]"
        if not isinstance(t, dict):
            raise InvalidRequest(f"Input {i} must be an object with name, shape, datatype and data.", field=where)
        for key in ("name", "shape", "datatype"):
            if key not in t:
                raise InvalidRequest(f"Input {i} lacks '{key}'.", field=f"{where}.{key}")
        name, shape, dtype = t["name"], t["shape"], t["datatype"]
        if not isinstance(name, str) or not name:
            raise InvalidRequest(f"Input {i}: 'name' must be a non-empty string.", field=f"{where}.name")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape) or len(shape) > 8:
            raise InvalidRequest(f"Input '{name}': 'shape' must be a list of whole numbers >= 0.",
                                 field=f"{where}.shape")
        if not isinstance(dtype, str) or dtype not in TO_NUMPY:
            raise InvalidRequest(f"Input '{name}' has unknown datatype {str(dtype)[:40]!r}; use one of "
                                 f"{', '.join(TO_NUMPY)}.", field=f"{where}.datatype")
        params = t.get("parameters") or {}
        if not isinstance(params, dict):
            raise InvalidRequest(f"Input '{name}': 'parameters' must be an object.", field=f"{where}.parameters")
        size = params.get("binary_data_size")
        if size is not None:
            if type(size) is not int or size < 0 or offset + size > len(binary):
                raise InvalidRequest(f"Input '{name}': binary_data_size {size!r} does not fit the "
                                     f"{len(binary) - offset} binary bytes left.",
                                     field=f"{where}.parameters.binary_data_size")
            arr = _decode_binary(binary[offset:offset + size], dtype, f"{where}.data")
            offset += size
        else:
            data = t.get("data")
            if data is None:
                raise InvalidRequest(f"Input '{name}' has no 'data'.", field=f"{where}.data")
            arr = _from_json_data(data, dtype, name, f"{where}.data")
        expected = math.prod(shape)
        if arr.size != expected:
            raise InvalidRequest(f"Input '{name}' has {arr.size} values but shape {shape} needs {expected}.",
                                 field=f"{where}.shape")
        arrays[name] = arr.reshape(shape)
    return req, arrays


def _check_outputs(req: dict[str, Any]) -> None:
    """``outputs`` and ``parameters`` are read after predicting: check their shape before."""
    outputs = req.get("outputs")
    if outputs is not None and (not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs)
                                or not all(isinstance(o.get("parameters") or {}, dict) for o in outputs)):
        raise InvalidRequest("'outputs' must be a list of objects ({\"name\": ..., \"parameters\": {...}}).",
                             field="outputs")
    if outputs and "name" in outputs[0] and not isinstance(outputs[0]["name"], str):
        raise InvalidRequest("'outputs[0].name' must be a string.", field="outputs[0].name")
    if not isinstance(req.get("parameters") or {}, dict):
        raise InvalidRequest("'parameters' must be an object.", field="parameters")


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

    @describe(OIP_BODY)
    @guard
    async def infer(request: Request) -> Response:
        name = endpoint_of(request)
        headers = request.headers
        service.authorize(headers, name)
        route = service.route(name)
        key = service.choose(route, headers, version_of(request))     # the version first, then its signature
        req, arrays = parse_request(await request.body(), headers.get("inference-header-content-length"))
        columns = to_columns(arrays, signature_names(service, key))
        pred = service.predict(columns, endpoint=name, headers=headers, protocol="oip_v2", key=key,
                               request_id=req.get("id"), authorized=True)
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
        return json_response(*service.readiness())

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
