"""What every wire protocol module shares: JSON in and out, error answers, table shapes."""

from __future__ import annotations

import logging
import math
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from conveyor.errors import (Conflict, ConveyorError, InvalidRequest, NotFound, PayloadTooLarge, PermissionDenied,
                             PredictionFailed, RateLimited, Unauthenticated, Unavailable)
from conveyor.serving.schema import from_columns, from_records, from_rows

log = logging.getLogger("conveyor.serving")

STATUS = [(PayloadTooLarge, 413), (InvalidRequest, 400), (Unauthenticated, 401), (PermissionDenied, 403),
          (NotFound, 404), (Conflict, 409), (RateLimited, 429), (Unavailable, 503), (PredictionFailed, 500)]
# The part of the request each kind of error is about, for errors that name no field themselves.
FIELD = [(Unauthenticated, "authorization"), (PermissionDenied, "authorization"), (RateLimited, "authorization"),
         (NotFound, "path"), (Unavailable, "server"), (PredictionFailed, "model")]


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status,
                    media_type="application/json", headers=headers)


def error_response(exc: ConveyorError, request_id: str | None = None) -> Response:
    """The JSON answer to an error: ``{"error", "field", "request_id"}`` and the status its class maps to."""
    status = next((code for cls, code in STATUS if isinstance(exc, cls)), 500)
    field = getattr(exc, "field", None) or next((f for cls, f in FIELD if isinstance(exc, cls)), "request")
    body: dict[str, Any] = {"error": exc.message, "field": field}
    headers = {}
    if request_id:
        body["request_id"] = request_id
        headers["X-Request-ID"] = request_id
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return json_response(body, status, headers)


def answer_error(service: Any, exc: ConveyorError, headers: Any, protocol: str, endpoint: str | None) -> Response:
    """Answer, log and count one failed request (the request id is the caller's, else a new one)."""
    rid = headers.get("x-request-id") or service.new_request_id()
    resp = error_response(exc, rid)
    if isinstance(exc, PredictionFailed):
        log.error("request %s: %s", rid, exc.message, exc_info=exc.__cause__ or exc, extra={"request_id": rid})
    service.count_error(endpoint, protocol, resp.status_code, type(exc).__name__, rid, getattr(exc, "version", None))
    return resp


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


def signature_names(service: Any, key: Any) -> list[str] | None:
    """Column names of the version ``key`` (the one that will answer), for bodies that send bare rows."""
    sig = service.model(key).signature
    return [c.name for c in sig.inputs] if sig else None


Handler = Callable[[Request], Awaitable[Response]]


def guarded(service: Any, protocol: str, endpoint_of: Callable[[Request], str | None]) -> Callable[[Handler], Handler]:
    """Turn ConveyorErrors raised by a handler into JSON answers, logged and counted.

    Anything else escapes to the edge (``edge.py``), which answers a JSON 500; the protocol is left
    in the scope so that answer is counted under it.
    """
    def wrap(fn: Handler) -> Handler:
        async def handler(request: Request) -> Response:
            try:
                return await fn(request)
            except ConveyorError as exc:
                return answer_error(service, exc, request.headers, protocol, endpoint_of(request))
            except BaseException:
                request.scope["conveyor.protocol"] = protocol
                raise
        handler.__doc__ = fn.__doc__
        return handler
    return wrap


class parsing:   # noqa: N801  (used as a context manager: ``with parsing("inputs"):``)
    """Inside it, a stray ValueError/TypeError… from decoding a body becomes a 400 naming ``field``.

    Decoders check what they know by name; this is the net under them, so a shape nobody foresaw
    still answers 400 and never reaches the model or a 500.
    """

    __slots__ = ("field",)

    def __init__(self, field: str) -> None:
        self.field = field

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        if kind is not None and issubclass(kind, (ValueError, TypeError, KeyError, IndexError, AttributeError,
                                                  OverflowError, UnicodeError, struct.error, RecursionError)) \
                and not issubclass(kind, ConveyorError):
            raise InvalidRequest(f"'{self.field}' could not be read: {type(exc).__name__}: {str(exc)[:200]}.",
                                 field=self.field) from None
        return False


def predictions_list(values: Any) -> list[Any]:
    return values.tolist()
