"""Champion/challenger: promote the challenger only when it wins on evidence, under a recorded decision.

The challenger (``name@challenger``) must beat the champion (``name@production``) on the chosen
metric by at least ``margin`` on the same holdout *and*, when enough labelled recent traffic
exists, on that traffic too (both models scored on the logged features); no guard metric may be
worse by more than ``guard_tolerance``. A win moves the alias (the server picks it up within
seconds); if the alias is protected, the version needs approval first: an agent holding the
approver role approves it with the decision as its comment, anyone else leaves it awaiting
approval. Every decision, won or lost, is written to the audit log; a promotion is undone with
``conveyor models rollback NAME --alias production``. Optionally a shadow phase comes first:
``start_shadow`` sends a copy of live traffic to the challenger, and with ``use_shadow=True`` its
logged answers to labelled requests are judged against the champion's answers to the same ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from conveyor.errors import InvalidRequest
from conveyor.monitoring.performance import score

LOWER_IS_BETTER = {"rmse", "mae"}


@dataclass
class PromotionPolicy:
    metric: str = "accuracy"
    margin: float = 0.0
    guards: list[str] = field(default_factory=list)
    guard_tolerance: float = 0.0
    champion_alias: str = "production"
    challenger_alias: str = "challenger"
    min_labelled: int = 200
    use_shadow: bool = False       # also judge on the challenger's shadow answers to live, labelled requests


@dataclass
class Decision:
    model: str
    champion: int | None
    challenger: int
    promote: bool
    reason: str
    scores: dict[str, dict[str, dict[str, float]]]
    outcome: str = "kept"          # kept | promoted | awaiting_approval

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _better(metric: str, a: float, b: float, margin: float) -> bool:
    """Is ``a`` better than ``b`` by at least ``margin``?"""
    return a <= b - margin if metric in LOWER_IS_BETTER else a >= b + margin


def _evaluate(model: Any, X: Any, y: np.ndarray) -> dict[str, float]:
    return score(np.asarray(y), np.asarray(model.predict(X)))


def decide(champion: Any, challenger: Any, policy: PromotionPolicy, evidence: dict[str, Any]) -> tuple[
        bool, str, dict[str, dict[str, dict[str, float]]]]:
    """Compare two models on each evidence set — ``(X, y)`` to score both on, or a dict of labels and
    both models' recorded answers — the challenger must win on all."""
    scores: dict[str, dict[str, dict[str, float]]] = {}
    reasons = []
    wins = True
    for name, item in evidence.items():
        if isinstance(item, dict):          # answers already given (the shadow phase): score them
            ch = score(np.asarray(item["y"]), np.asarray(item["challenger"]))
            cp = score(np.asarray(item["y"]), np.asarray(item["champion"]))
        else:
            X, y = item
            ch = _evaluate(challenger, X, y)
            cp = _evaluate(champion, X, y) if champion is not None else {}
        scores[name] = {"challenger": ch, "champion": cp}
        if policy.metric not in ch:
            raise InvalidRequest(f"Metric '{policy.metric}' does not apply here; available: {', '.join(ch)}.",
                                 field="metric")
        if champion is None:
            continue
        a, b = ch[policy.metric], cp[policy.metric]
        if not _better(policy.metric, a, b, policy.margin):
            wins = False
            reasons.append(f"{name}: {policy.metric} {a:.4f} vs champion {b:.4f} (needs a margin of {policy.margin:g})")
        else:
            reasons.append(f"{name}: {policy.metric} {a:.4f} beats {b:.4f}")
        for g in policy.guards:
            if g in ch and g in cp and _better(g, cp[g], ch[g], policy.guard_tolerance) and cp[g] != ch[g]:
                wins = False
                reasons.append(f"{name}: guard {g} worse ({ch[g]:.4f} vs {cp[g]:.4f})")
    if champion is None:
        return True, "no champion yet", scores
    return wins, "; ".join(reasons), scores


def recent_traffic(client: Any, endpoint: str, window: str, feature_names: list[str],
                   last: int | None = None) -> tuple[Any, Any] | None:
    """Logged features and their late labels for an endpoint's traffic in ``window`` (only the ``last``
    labelled rows when given), oldest first; None if there are none."""
    import pandas as pd

    from conveyor.monitoring.sources import log_window, parse_window, read_labels

    logged = log_window(client.settings.artifact_root, endpoint, parse_window(window))
    if logged.num_rows == 0:
        return None
    labels = read_labels(client.settings.artifact_root, endpoint).to_pandas()
    cols = ["request_id", "row", "ts"] + [f"feature.{n}" for n in feature_names]
    missing = [c for c in cols if c not in logged.column_names]
    if missing or labels.empty:
        return None
    frame = logged.select(cols).to_pandas()
    frame["row"] = frame["row"].astype("int32")
    labels["row"] = labels["row"].astype("int32")
    joined = frame.merge(labels, on=["request_id", "row"], how="inner").sort_values(["ts", "row"], kind="stable")
    if last is not None:
        joined = joined.tail(last)
    if joined.empty:
        return None
    X = pd.DataFrame({n: joined[f"feature.{n}"].to_numpy() for n in feature_names})
    return X, joined["label"].to_numpy()


def start_shadow(client: Any, name: str, endpoint: str, alias: str = "challenger") -> dict[str, Any]:
    """Send a copy of the endpoint's traffic to ``name@alias`` (answers logged, never returned): the
    shadow phase before a promotion. Returns the endpoint's new spec."""
    record = client.metadata.endpoints.get(endpoint)
    spec = dict(record.spec)
    ref = f"{name}@{alias}"
    client.registry.resolve(ref)
    if ref not in spec.get("shadows", []):
        spec["shadows"] = [*spec.get("shadows", []), ref]
        client.metadata.endpoints.update(endpoint, spec, client.settings.actor)
    return spec


def shadow_answers(client: Any, endpoint: str, name: str, champion: int, challenger: int,
                   window: str) -> dict[str, Any] | None:
    """Labelled requests both versions answered: the champion live, the challenger in shadow."""
    import datetime as dt

    from conveyor.monitoring.sources import parse_window, read_labels
    from conveyor.serving.prediction_log import read_prediction_log

    since = dt.datetime.now(dt.UTC) - parse_window(window)
    logged = read_prediction_log(client.settings.artifact_root, endpoint, since=since)
    if logged.num_rows == 0 or "prediction" not in logged.column_names:
        return None
    frame = logged.select(["request_id", "row", "model", "version", "shadow", "prediction"]).to_pandas()
    frame = frame[frame["model"] == name]
    live = frame[(~frame["shadow"]) & (frame["version"] == champion)]
    shadow = frame[frame["shadow"] & (frame["version"] == challenger)]
    both = live.merge(shadow, on=["request_id", "row"], suffixes=("_champion", "_challenger"))
    labels = read_labels(client.settings.artifact_root, endpoint).to_pandas()
    if both.empty or labels.empty:
        return None
    both["row"] = both["row"].astype("int32")
    labels["row"] = labels["row"].astype("int32")
    joined = both.merge(labels, on=["request_id", "row"])
    if joined.empty:
        return None
    return {"y": joined["label"].to_numpy(), "champion": joined["prediction_champion"].to_numpy(),
            "challenger": joined["prediction_challenger"].to_numpy()}


def promote_challenger(client: Any, name: str, policy: PromotionPolicy | None = None, *,
                       holdout: tuple[Any, Any] | None = None, endpoint: str | None = None,
                       window: str = "7d", recent_rows: int | None = None) -> Decision:
    """Decide champion vs challenger for model ``name`` and act on it (see the module docstring)."""
    policy = policy or PromotionPolicy()
    reg = client.registry
    aliases = client.metadata.models.aliases(name)
    if policy.challenger_alias not in aliases:
        raise InvalidRequest(f"Model '{name}' has no '{policy.challenger_alias}' alias to promote.",
                             field="challenger")
    ch_version = aliases[policy.challenger_alias]
    cp_version = aliases.get(policy.champion_alias)
    challenger = reg.load(f"{name}:{ch_version}")
    champion = reg.load(f"{name}:{cp_version}") if cp_version is not None else None
    evidence: dict[str, Any] = {}
    if holdout is not None:
        evidence["holdout"] = holdout
    if endpoint is not None:
        sig = reg.resolve(f"{name}:{ch_version}").signature or {}
        names = [c["name"] for c in sig.get("inputs", [])]
        traffic = recent_traffic(client, endpoint, window, names, recent_rows) if names else None
        if traffic is not None and len(traffic[1]) >= policy.min_labelled:
            evidence["recent_traffic"] = traffic
    if endpoint is not None and policy.use_shadow and cp_version is not None:
        shadow = shadow_answers(client, endpoint, name, cp_version, ch_version, window)
        if shadow is not None and len(shadow["y"]) >= policy.min_labelled:
            evidence["shadow"] = shadow
    if not evidence:
        raise InvalidRequest("No evidence to decide on: pass a holdout (X, y) and/or an endpoint with labelled "
                             "traffic.", field="holdout")
    wins, reason, scores = decide(champion, challenger, policy, evidence)
    decision = Decision(name, cp_version, ch_version, wins, reason, scores)
    if wins:
        target = reg.resolve(f"{name}:{ch_version}")
        if policy.champion_alias in reg.protected_aliases(name) and target.approval != "approved":
            roles = client.metadata.models.roles_of(reg.actor)
            if "approver" in roles or "admin" in roles:
                reg.approve(f"{name}:{ch_version}", f"champion/challenger: {reason}")
            else:
                decision.outcome = "awaiting_approval"
        if decision.outcome != "awaiting_approval":
            reg.set_alias(name, policy.champion_alias, ch_version, action="promote", detail=reason)
            decision.outcome = "promoted"
    _audit(client, decision)
    return decision


def _audit(client: Any, decision: Decision) -> None:
    from conveyor.store.metadata.models import audit

    with client.metadata.models.write() as conn:
        audit(conn, client.registry.actor, "promotion_decision", model=decision.model, version=decision.challenger,
              before={"champion": decision.champion}, after=decision.to_dict(), detail=decision.reason[:1000])
