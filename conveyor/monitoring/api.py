"""Monitoring from Python: drift reports and performance for an endpoint or for any two data sets."""

from __future__ import annotations

import datetime as dt
from typing import Any

from conveyor.errors import InvalidRequest, NotFound
from conveyor.monitoring.drift import DriftConfig, DriftReport, compare
from conveyor.monitoring.profile import Profile
from conveyor.monitoring.sources import (features_of, log_window, looks_like_uri, parse_window, read_labels,
                                         read_table, reference_profile, served_version)


def _client(client: Any) -> Any:
    if client is not None:
        return client
    from conveyor.runtime.client import Client

    return Client()


def drift_report(endpoint: str | None = None, *, window: str | dt.timedelta | None = "24h",
                 current: Any = None, reference: Any = None, config: DriftConfig | None = None,
                 until: dt.datetime | None = None, client: Any = None) -> DriftReport:
    """Drift of an endpoint's recent traffic (or of ``current`` data) against a reference.

    ``reference``: ``name:version`` / ``name@alias`` (the profile stored with that version), a file
    URI, a DataFrame/Arrow table, or a Profile; by default the version that served the window.
    ``current``: a file URI or data; by default the endpoint's prediction log over ``window``.
    """
    meta: dict[str, Any] = {"endpoint": endpoint}
    needs_client = current is None or reference is None or (isinstance(reference, str)
                                                             and not looks_like_uri(reference))
    cl = _client(client) if needs_client else client
    if current is None:
        if endpoint is None:
            raise InvalidRequest("Name an endpoint or pass current data (--current FILE).", field="current")
        span = parse_window(window) if isinstance(window, str) else window
        log = log_window(cl.settings.artifact_root, endpoint, span, until)
        if log.num_rows == 0:
            raise NotFound(f"Endpoint '{endpoint}' logged no predictions in the last {window}. Check the name "
                           "(`conveyor endpoints list`) or widen --window.")
        current_data = _with_labels(features_of(log), log, read_labels(cl.settings.artifact_root, endpoint))
        meta["window"] = str(window)
        served = served_version(log)
        if reference is None and served is not None:
            reference = f"{served[0]}:{served[1]}"
    elif isinstance(current, str):
        meta["current"] = current
        current_data = read_table(current)
    else:
        current_data = current
    if reference is None:
        raise InvalidRequest("No reference: pass --reference NAME:VERSION or a file.", field="reference")
    if isinstance(reference, Profile):
        ref_profile, label = reference, "profile"
    elif isinstance(reference, str):
        ref_profile, label = reference_profile(cl, reference)
    else:
        ref_profile, label = Profile.from_data(reference), "data"
    meta["reference"] = label
    report = compare(ref_profile, current_data, config)
    report.meta = {k: v for k, v in meta.items() if v is not None} | {
        "generated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    return report


def _with_labels(features: Any, log: Any, labels: Any) -> Any:
    """Add late labels as a ``target`` column (missing where none arrived), for target drift."""
    import pyarrow as pa

    from conveyor.monitoring.profile import TARGET

    if labels.num_rows == 0:
        return features
    keys = log.select(["request_id", "row"]).to_pandas()
    keys["row"] = keys["row"].astype("int32")
    lab = labels.to_pandas()
    lab["row"] = lab["row"].astype("int32")
    joined = keys.merge(lab, on=["request_id", "row"], how="left")
    if joined["label"].notna().sum() == 0:
        return features
    return features.append_column(TARGET, pa.array(joined["label"].to_numpy(), from_pandas=True))


def endpoint_performance(endpoint: str, *, window: str = "24h", every: str | None = None,
                         until: dt.datetime | None = None, client: Any = None) -> dict[str, Any]:
    """Accuracy/F1/ROC AUC or RMSE/MAE of an endpoint's predictions that have labels, overall and per bucket."""
    from conveyor.monitoring.performance import performance

    cl = _client(client)
    log = log_window(cl.settings.artifact_root, endpoint, parse_window(window), until)
    labels = read_labels(cl.settings.artifact_root, endpoint)
    overall, windows, labelled = performance(log, labels, every=parse_window(every) if every else None)
    return {"endpoint": endpoint, "window": window, "rows": log.num_rows, "metrics": overall,
            "labelled": labelled,
            "windows": [w.__dict__ for w in windows]}
