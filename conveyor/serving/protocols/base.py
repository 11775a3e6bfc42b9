"""What every wire protocol module shares: JSON in and out, error answers, table shapes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from conveyor.errors import (ConveyorError, InvalidRequest, NotFound, PermissionDenied, RateLimited,
                             Unauthenticated)
from conveyor.serving.schema import from_columns, from_records, from_rows

STATUS = [(InvalidRequest, 400), (Unauthenticated, 401), (PermissionDenied, 403), (NotFound, 404),
          (RateLimited, 429)]


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status,
                    media_type="application/json", headers=headers)


def error_response(exc: ConveyorError) -> Response:
    status = next((code for cls, code in STATUS if isinstance(exc, cls)), 500)
    body: dict[str, Any] = {"error": exc.message}
    headers = {}
    if isinstance(exc, InvalidRequest) and exc.field:
        body["field"] = exc.field
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(max(1, round(exc.retry_after + 0.5)))
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return json_response(body, status, headers)


def load_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The body is not valid JSON: {exc}.", field="body") from None


def frame_from_json(obj: Any, names: list[str] | None) -> dict[str, list[Any]]:
    """The table shapes MLflow, SageMaker, Vertex AI and Azure ML clients send, as columns."""
    if isinstance(obj, dict):
        if "dataframe_split" in obj:
            split = obj["dataframe_split"]
            if not isinstance(split, dict) or "data" not in split:
                raise InvalidRequest("'dataframe_split' needs 'columns' and 'data'.", field="dataframe_split")
            return from_rows(split["data"], split.get("columns") or names, "dataframe_split.data")
        if "dataframe_records" in obj:
            return from_records(obj["dataframe_records"], "dataframe_records")
        if "input_data" in obj:   # Azure ML's MLflow-style payload
            inner = obj["input_data"]
            if isinstance(inner, dict) and "data" in inner:
                return from_rows(inner["data"], inner.get("columns") or names, "input_data.data")
            return frame_from_json(inner, names)
        for key in ("instances", "inputs", "data"):
            if key in obj:
                value = obj[key]
                if isinstance(value, dict):
                    return from_columns(value, key)
                if isinstance(value, list) and value and isinstance(value[0], dict):
                    return from_records(value, key)
                return from_rows(value, names, key)
        raise InvalidRequest("The JSON body has none of the known keys: dataframe_split, dataframe_records, "
                             "instances, inputs, data, input_data.", field="body")
    if isinstance(obj, list):
        if obj and isinstance(obj[0], dict):
            return from_records(obj)
        return from_rows(obj, names)
    raise InvalidRequest("The JSON body must be an object or a list.", field="body")


def signature_names(service: Any, endpoint: str | None) -> list[str] | None:
    """Column names of the version an endpoint would use, for bodies that send bare rows."""
    route = service.route(endpoint)
    sig = service.model(route.keys[0]).signature
    return [c.name for c in sig.inputs] if sig else None


Handler = Callable[[Request], Awaitable[Response]]


def guarded(service: Any, protocol: str, endpoint_of: Callable[[Request], str | None]) -> Callable[[Handler], Handler]:
    """Turn ConveyorErrors raised by a handler into JSON answers and count them."""
    def wrap(fn: Handler) -> Handler:
        async def handler(request: Request) -> Response:
            try:
                return await fn(request)
            except ConveyorError as exc:
                resp = error_response(exc)
                service.count_error(endpoint_of(request), protocol, resp.status_code, type(exc).__name__)
                return resp
        return handler
    return wrap


def predictions_list(values: Any) -> list[Any]:
    return values.tolist()
