"""``conveyor studies list|show``: counts, best trial, importances, and the HTML page."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

import conveyor as cv
from conveyor.cli.main import app
from conveyor.errors import NotFound


def objective(trial: Any) -> float:
    bonus = {"a": 0.0, "b": 0.5}[trial.params["kind"]]
    return -(trial.params["x"] - 2.0) ** 2 + bonus + 0.001 * trial.params["depth"]


def test_studies_list_and_show_with_html(client: Any, tmp_path: Path) -> None:
    cv.tune(objective, {"x": cv.train.uniform(0.0, 4.0), "kind": ["a", "b"], "depth": cv.train.integer(1, 8)},
            n_trials=12, sampler="random", seed=5, study_name="shapes", client=client, progress=False)
    runner = CliRunner()
    listed = runner.invoke(app, ["studies", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    [row] = json.loads(listed.output)
    assert row["name"] == "shapes" and row["complete"] == 12 and row["directions"] == ["maximize"]

    page = tmp_path / "shapes.html"
    shown = runner.invoke(app, ["studies", "show", "shapes", "--json", "--html", str(page)])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    assert len(data["trials"]) == 12 and all(t["run_id"] for t in data["trials"])
    best = data["best"][0]
    assert best["values"][0] == max(t["values"][0] for t in data["trials"])
    assert set(data["importances"]) == {"x", "kind", "depth"}
    assert abs(sum(data["importances"].values()) - 1.0) < 1e-6
    assert max(data["importances"], key=data["importances"].get) == "x"   # x moves the objective most

    text = page.read_text()
    for label in ("optimisation history", "importances", "parallel coordinates"):
        assert f'aria-label="{label}"' in text
    assert "<script" not in text and "http" not in text             # self-contained
    parallel = text.split('aria-label="parallel coordinates"')[1].split("</svg>")[0]
    assert len(re.findall("<polyline", parallel)) == 12              # one line per completed trial

    missing = runner.invoke(app, ["studies", "show", "nope"])
    assert isinstance(missing.exception, NotFound) and "Studies: shapes" in str(missing.exception)
