"""Dataset diffs: exactly the rows added, removed and changed by key, schema and distribution changes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from conveyor.data.datasets import DatasetCatalog
from conveyor.data.diff import diff_tables
from conveyor.errors import InvalidRequest
from tests.cli.test_cli import cli  # noqa: F401  (fixture)


def _versions(n: int = 5000) -> tuple[pa.Table, pa.Table, set[int], set[int], set[int]]:
    rng = np.random.default_rng(0)
    old = pa.table({"id": np.arange(n), "spend": rng.normal(100, 10, n), "plan": rng.choice(["free", "pro"], n),
                    "note": pa.array([None] * n, pa.string()), "gone": np.zeros(n)})
    removed = set(rng.choice(n, 40, replace=False).tolist())
    keep = np.array([i for i in range(n) if i not in removed])
    new = old.take(keep).drop_columns(["gone"])
    changed = set(rng.choice(keep, 25, replace=False).tolist()) - removed
    spend = new.column("spend").to_numpy().copy()
    pos = np.flatnonzero(np.isin(new.column("id").to_numpy(), list(changed)))
    spend[pos] += 1.0
    new = new.set_column(1, "spend", pa.array(spend)).append_column("score", pa.array(np.ones(len(keep))))
    added = set(range(n, n + 30))
    extra = pa.table({"id": np.array(sorted(added)), "spend": rng.normal(200, 10, 30), "plan": ["team"] * 30,
                      "note": pa.array(["new"] * 30), "score": np.ones(30)})
    new = pa.concat_tables([new, extra.cast(new.schema)])
    new = new.take(rng.permutation(new.num_rows))            # row order never matters
    return old, new, added, removed, changed


def test_diff_by_key_finds_exactly_the_added_removed_and_changed_rows() -> None:
    old, new, added, removed, changed = _versions()
    d = diff_tables(old, new, key="id", examples=100)
    assert (d.added, d.removed, d.changed) == (len(added), len(removed), len(changed))
    assert {r["id"] for r in d.examples["added"]} == added
    assert {r["id"] for r in d.examples["removed"]} == removed
    assert {e["key"]["id"] for e in d.examples["changed"]} == changed
    assert d.changed_by_column == {"spend": len(changed), "plan": 0, "note": 0}      # nulls equal nulls
    e = d.examples["changed"][0]
    assert e["changes"]["spend"][1] == pytest.approx(e["changes"]["spend"][0] + 1.0)
    assert d.columns_added == [{"name": "score", "type": "double"}]
    assert d.columns_removed == [{"name": "gone", "type": "double"}]
    assert d.unchanged == old.num_rows - len(removed) - len(changed)
    # the same against pandas, the reference answer
    m = old.to_pandas().merge(new.to_pandas(), on="id", how="outer", indicator=True)
    assert (m["_merge"] == "right_only").sum() == d.added and (m["_merge"] == "left_only").sum() == d.removed
    # without a key whole rows are compared: a changed row is one removed and one added
    whole = diff_tables(old.drop_columns(["gone"]), new.drop_columns(["score"]))
    assert (whole.added, whole.removed, whole.changed) == (len(added) + len(changed), len(removed) + len(changed), None)


def test_a_key_that_is_not_unique_or_missing_is_a_clear_error() -> None:
    t = pa.table({"id": [1, 1, 2], "x": [1, 2, 3]})
    with pytest.raises(InvalidRequest, match=r"Key id is not unique in before: 1 rows repeat a key \(e.g. \[\{'id': 1\}\]\)"):
        diff_tables(t, t, key="id")
    with pytest.raises(InvalidRequest, match="Key column nope is not in before"):
        diff_tables(t, t, key="nope")


def test_cli_diff_list_show_alias_with_html(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    from typer.testing import CliRunner

    from conveyor.cli.main import app
    from conveyor.config import load_settings
    from conveyor.runtime.client import Client

    old, new, added, removed, changed = _versions(2000)
    monkeypatch.setenv("CONVEYOR_HOME", str(tmp_path / "home"))      # the home the commands below use
    monkeypatch.setenv("COLUMNS", "200")
    client = Client(load_settings())
    catalog = DatasetCatalog(client.metadata, client.artifacts, "tester")
    catalog.register("customers", old)
    rng = np.random.default_rng(5)
    shifted = new.set_column(1, "spend", pa.array(new.column("spend").to_numpy() + rng.normal(30, 1, new.num_rows)))
    catalog.register("customers", new)
    catalog.register("customers", shifted)
    client.close()

    def run(*args: str) -> str:
        result = CliRunner().invoke(app, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    out = json.loads(run("datasets", "diff", "customers:1", "customers:2", "--key", "id", "--json"))
    assert (out["added"], out["removed"], out["changed"]) == (len(added), len(removed), len(changed))
    page = tmp_path / "diff.html"
    text = run("datasets", "diff", "customers:2", "customers:3", "-k", "id", "--html", str(page))
    assert "customers:2 → customers:3" in text and "changed" in text and "spend" in text
    html = page.read_text()
    assert html.startswith("<!doctype html>") and "<script" not in html and "<svg" in html and "http" not in html
    dist = json.loads(run("datasets", "diff", "customers:2", "customers:3", "-k", "id", "--json"))
    verdicts = {c["column"]: c["drifted"] for c in dist["distributions"]}
    assert verdicts["spend"] is True and verdicts["plan"] is False
    run("datasets", "alias", "customers:2", "train")
    shown = json.loads(run("datasets", "show", "customers@train", "--json"))
    assert shown["version"] == 2 and shown["aliases"] == ["train"] and shown["rows"] == new.num_rows
    listed = json.loads(run("datasets", "list", "--json"))
    assert listed == [{"name": "customers", "versions": 3, "latest": 3, "aliases": {"train": 2}}]
    table = run("datasets", "show", "customers")
    assert "dataset customers" in table and "train" in table and f"{new.num_rows:,}" in table
    # as a user types it: a bad reference is a message and an exit code, never a traceback
    bad = cli("datasets", "diff", "customers:1", "customers:9", ok=False)
    assert bad.returncode != 0 and "has no version 9" in bad.stderr + bad.stdout and "Traceback" not in bad.stderr
