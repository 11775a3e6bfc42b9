"""Prediction quality once labels arrive: the prediction log joined to labels by request id and row."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class WindowMetrics:
    start: str
    end: str
    rows: int
    labelled: int
    metrics: dict[str, float]


def join_labels(log: Any, labels: Any) -> Any:
    """Logged rows that have a label: a DataFrame with ts, version, prediction and label."""
    import pandas as pd

    if log.num_rows == 0:
        return pd.DataFrame(columns=["request_id", "row", "ts_s", "version", "prediction", "label"])
    pred_col = "prediction" if "prediction" in log.column_names else "prediction_text"
    left = log.select(["request_id", "row", "version", pred_col]).to_pandas()
    left["ts_s"] = _epoch_seconds(log)
    left = left.rename(columns={pred_col: "prediction"})
    right = labels.to_pandas()
    if left.empty or right.empty:
        return pd.DataFrame(columns=["request_id", "row", "ts_s", "version", "prediction", "label"])
    left["row"] = left["row"].astype("int32")
    right["row"] = right["row"].astype("int32")
    right["request_id"] = right["request_id"].astype(str)
    return left.merge(right, on=["request_id", "row"], how="inner")


def _epoch_seconds(log: Any) -> np.ndarray:
    import pyarrow as pa

    return log.column("ts").cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy() // 1_000_000


def task_of(labels: np.ndarray, predictions: np.ndarray) -> str:
    """``classification`` when labels are text, booleans or few whole numbers matching the predictions."""
    if labels.dtype.kind in "OUSb" or predictions.dtype.kind in "OUSb":
        return "classification"
    whole = np.all(np.mod(labels, 1) == 0) and np.all(np.mod(predictions, 1) == 0)
    return "classification" if whole and len(np.unique(labels)) <= 50 else "regression"


def score(labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """accuracy / F1 / ROC AUC for classes, RMSE / MAE / R² for numbers."""
    from sklearn import metrics

    if len(labels) == 0:
        return {}
    if task_of(labels, predictions) == "classification":
        y, p = labels.astype(str), predictions.astype(str)
        if labels.dtype.kind in "iuf" and predictions.dtype.kind in "iuf":
            y, p = labels.astype(np.int64), predictions.astype(np.int64)
        classes = np.unique(np.concatenate([np.unique(y), np.unique(p)]))
        binary = len(classes) <= 2
        out = {"accuracy": float(metrics.accuracy_score(y, p)),
               "f1": float(metrics.f1_score(y, p, average="binary" if binary and set(classes.tolist()) <= {0, 1}
                                            else "macro", zero_division=0))}
        if binary and len(np.unique(y)) == 2 and labels.dtype.kind in "iufb" and predictions.dtype.kind in "iufb":
            out["roc_auc"] = float(metrics.roc_auc_score(y, predictions))
        return out
    err = predictions.astype(np.float64) - labels.astype(np.float64)
    out = {"rmse": float(np.sqrt(np.mean(err ** 2))), "mae": float(np.mean(np.abs(err)))}
    if len(labels) > 1 and np.var(labels) > 0:
        out["r2"] = float(metrics.r2_score(labels, predictions))
    return out


def performance(log: Any, labels: Any, *, every: dt.timedelta | None = None) -> tuple[dict[str, float],
                                                                                       list[WindowMetrics], int]:
    """Metrics over all labelled rows, per ``every``-long time bucket, and how many rows had labels."""
    joined = join_labels(log, labels)
    overall = score(joined["label"].to_numpy(), joined["prediction"].to_numpy()) if len(joined) else {}
    windows: list[WindowMetrics] = []
    if every is not None and len(joined):
        import pandas as pd

        step = max(int(every.total_seconds()), 1)
        bucket = (joined["ts_s"] // step) * step
        totals = pd.Series((_epoch_seconds(log) // step) * step).value_counts()
        for b, part in joined.groupby(bucket):
            start = dt.datetime.fromtimestamp(int(b), dt.UTC)
            windows.append(WindowMetrics(start.isoformat(), (start + every).isoformat(), int(totals.get(b, 0)),
                                         len(part), score(part["label"].to_numpy(), part["prediction"].to_numpy())))
    return overall, windows, len(joined)
