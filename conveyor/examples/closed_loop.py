"""The closed loop, end to end on generated data.

train and deploy → serve traffic that gradually drifts (and whose labels arrive late) → the monitor
fires → the trigger retrains on recent labelled traffic → the challenger beats the champion on a
holdout and on recent traffic → it is promoted → the server answers with the new version.

Run it with ``conveyor quickstart --loop`` or ``python examples/closed_loop.py``. The ``train``
pipeline below is also what the trigger runs (``closed_loop.py:train -p source=recent --fresh``:
its ``load`` step reads the prediction log, which the cache cannot see, so each retrain firing
runs every step and reads the traffic as it is then).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import conveyor as cv
from conveyor.errors import NotFound

MODEL, ENDPOINT, MONITOR, TRIGGER = "loop", "loop-api", "loop-drift", "loop-retrain"
FEATURES = ["x0", "x1", "x2", "x3"]


def world(n: int, seed: int, phase: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Phase 0 is the world the first model learnt; from phase 1 on, x0 drifts and x1 decides churn."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, len(FEATURES))), columns=FEATURES)
    X["x0"] += 0.6 * phase
    logit = (X["x0"] + 0.5 * X["x1"]) if phase == 0 else (2.0 * X["x1"] - 0.3 * X["x2"])
    return X, (logit + rng.normal(0, 0.3, n) > 0).astype(int).to_numpy()


# --- the pipeline the loop runs --------------------------------------------------------------

@cv.step
def load(source: str, rows: int, seed: int) -> pd.DataFrame:
    """Initial data from the generator, or the most recent labelled traffic from the prediction log."""
    if source == "initial":
        X, y = world(rows, seed, 0)
        return X.assign(label=y)
    from conveyor.automation.promotion import recent_traffic
    from conveyor.runtime.client import Client

    client = Client()
    traffic = recent_traffic(client, ENDPOINT, "1h", FEATURES, last=rows)
    if traffic is None:
        raise ValueError(f"No labelled traffic on {ENDPOINT} yet; ingest labels first.")
    X, y = traffic
    return X.assign(label=y).reset_index(drop=True)


@cv.step
def split(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    cut = int(len(frame) * 0.7)
    return frame.iloc[:cut].reset_index(drop=True), frame.iloc[cut:].reset_index(drop=True)


@cv.step
def fit(train: pd.DataFrame) -> Any:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=500).fit(train[FEATURES], train["label"])
    cv.log_metric("train_accuracy", float(model.score(train[FEATURES], train["label"])))
    return model


@cv.step(cache=False)   # registers and moves aliases: a re-run must do it again
def publish(model: Any, train: pd.DataFrame, holdout: pd.DataFrame, source: str) -> dict:
    """Register the model; the first one becomes production, a retrained one the challenger, which
    is then promoted only if it wins."""
    from conveyor.automation.promotion import PromotionPolicy, promote_challenger
    from conveyor.runtime.client import Client

    accuracy = float(model.score(holdout[FEATURES], holdout["label"]))
    version = cv.register_model(MODEL, model, metrics={"holdout_accuracy": accuracy}, data=train[FEATURES]).version
    client = Client()
    reg = client.registry
    if source == "initial":
        reg.approve(f"{MODEL}:{version}", "first model")
        reg.set_alias(MODEL, "production", version)
        return {"version": version, "outcome": "production"}
    reg.set_alias(MODEL, "challenger", version)
    decision = promote_challenger(client, MODEL, PromotionPolicy(metric="accuracy", margin=0.02, min_labelled=100),
                                  holdout=(holdout[FEATURES], holdout["label"].to_numpy()), endpoint=ENDPOINT,
                                  window="1h", recent_rows=len(train) + len(holdout))
    return {"version": version, "outcome": decision.outcome, "reason": decision.reason}


@cv.pipeline
def train(source: str = "initial", rows: int = 3000, seed: int = 0):
    frame = load(source, rows, seed)
    parts = split(frame)
    model = fit(parts[0])
    publish(model, parts[0], parts[1], source)


def create_retrain_trigger(store: Any, rows: int) -> None:
    """The trigger that retrains on the monitor's alerts. Fresh: ``load`` reads the outside world (the
    recent traffic), which no cache key of its parameters can see, so a cached run would retrain nothing."""
    store.create_trigger(TRIGGER, "monitor", MONITOR, f"{Path(__file__).resolve()}:train",
                         {"source": "recent", "rows": str(rows)}, max_concurrent=1, fresh=True)


# --- the demo --------------------------------------------------------------------------------

@dataclass
class Timeline:
    start: float = field(default_factory=time.time)
    events: list[tuple[float, str]] = field(default_factory=list)

    def add(self, text: str, echo: Any = None) -> None:
        self.events.append((time.time() - self.start, text))
        if echo is not None:
            from rich.markup import escape

            echo(f"[dim]{time.time() - self.start:6.1f}s[/] {escape(text)}")


def run_loop(*, phases: int = 4, per_phase: int = 200, timeout_s: float = 180.0, echo: Any = None) -> Timeline:
    """The whole loop in this process (server, agent, traffic); returns the timeline."""
    import httpx
    import uvicorn

    from conveyor.automation.agent import Agent
    from conveyor.monitoring.sources import ingest_labels
    from conveyor.runtime.client import Client
    from conveyor.serving.server import build_app

    tl = Timeline()
    client = Client()
    client.metadata.models.grant(client.settings.actor, "approver", client.settings.actor)
    first = train.run(source="initial", client=client)
    v1 = first.output("publish")["version"]
    tl.add(f"trained {MODEL}:{v1} on the initial data (run {first.id}); it is production", echo)

    store = client.metadata.automation
    endpoints = {e.name for e in client.metadata.endpoints.list()}
    spec = {"routes": [{"model": f"{MODEL}@production", "weight": 100}]}
    if ENDPOINT in endpoints:
        client.metadata.endpoints.update(ENDPOINT, spec, client.settings.actor)
    else:
        client.metadata.endpoints.create(ENDPOINT, spec, client.settings.actor)
    for name, drop in ((TRIGGER, store.delete_trigger), (MONITOR, store.delete_monitor)):
        try:
            drop(name)              # the trigger first: a monitor with a trigger on it is not deleted
        except NotFound:
            pass
    store.create_monitor(MONITOR, ENDPOINT, 2.0, {"window": "1h", "min_rows": 300, "drift_share": 0.25,
                                                  "cooldown_s": 3600})
    create_retrain_trigger(store, per_phase)

    app = build_app(client.settings, auth="off", access_log=False)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    tl.add(f"serving endpoint {ENDPOINT} on http://127.0.0.1:{port} ({MODEL}@production)", echo)

    agent = Agent(client, deliver=False)
    stop = threading.Event()

    def agent_loop() -> None:
        while not stop.wait(1.0):
            agent.tick()

    threading.Thread(target=agent_loop, daemon=True).start()
    tl.add(f"agent watching: monitor {MONITOR} every 2s → trigger {TRIGGER}", echo)

    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    seen_alert = seen_firing = False
    served = v1
    deadline = time.time() + timeout_s
    phase = 0
    try:
        while time.time() < deadline:
            X, y = world(per_phase, 100 + phase, min(phase, phases))
            ids, versions = [], set()
            for row in X.to_numpy().round(5).tolist():
                resp = http.post("/invocations", json={"instances": [row]})
                resp.raise_for_status()
                ids.append(resp.headers["x-request-id"])
                versions.add(resp.headers["x-conveyor-model"])
            ingest_labels(client.settings.artifact_root, pd.DataFrame({"request_id": ids, "label": y}),
                          endpoint=ENDPOINT)
            tl.add(f"traffic phase {phase}: {per_phase} requests (x0 shifted by {0.6 * min(phase, phases):.1f}), "
                   f"answered by {', '.join(sorted(versions))}; labels arrived", echo)
            time.sleep(2.5)              # let the server flush its log and the monitor look
            for a in store.alerts(MONITOR):
                if not seen_alert and not a.suppressed:
                    seen_alert = True
                    tl.add(f"ALERT {a.message}", echo)
            for f in store.firings(TRIGGER):
                if not seen_firing and f.status in ("running", "succeeded", "failed"):
                    seen_firing = True
                    tl.add(f"trigger {TRIGGER} fired (cause: alert {f.cause.get('alert')}) → retraining", echo)
            current = client.metadata.models.aliases(MODEL).get("production")
            if current != served:
                decision = next((e for e in client.registry.audit(MODEL, 20) if e.action == "promotion_decision"),
                                None)
                if decision is not None:
                    tl.add(f"challenger {MODEL}:{current} promoted: {decision.detail}", echo)
                served = current
                for _ in range(50):          # the server switches within its poll interval
                    probe = http.post("/invocations", json={"instances": [X.to_numpy()[0].tolist()]})
                    if probe.headers["x-conveyor-model"] == f"{MODEL}:{current}":
                        tl.add(f"server now answers with {MODEL}:{current}", echo)
                        return tl
                    time.sleep(0.2)
            phase += 1
        raise TimeoutError(f"the loop did not close within {timeout_s:.0f}s; see `conveyor monitors history "
                           f"{MONITOR}` and `conveyor firings list`")
    finally:
        stop.set()
        agent.wait_for_children(timeout=60)
        server.should_exit = True
        http.close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    from rich.console import Console

    os.environ.setdefault("CONVEYOR_HOME", ".conveyor")
    run_loop(echo=Console().print)
