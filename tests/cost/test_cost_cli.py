"""``conveyor gc``, ``conveyor storage`` and ``conveyor cost`` as a user runs them (in process, no terminal)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conveyor.cli.main import main
from tests.cost import pipelines as p
from tests.cost.conftest import add_attempts, age_run

PIPELINE_FILE = str(Path(p.__file__))


def _cli(capsys, *args: str, code: int = 0) -> tuple[str, str]:
    if code:
        with pytest.raises(SystemExit) as exit_:
            main(list(args))
        assert exit_.value.code == code
    else:
        main(list(args))
    out = capsys.readouterr()
    return out.out, out.err


def test_gc_refuses_without_a_terminal_and_removes_with_yes(client, capsys) -> None:
    old = p.chain.run(client=client, seed=1)
    age_run(client.metadata, old.id, 40)
    _out, err = _cli(capsys, "gc", code=1)
    assert "Aborted; nothing was changed. There is no terminal to confirm on: pass --yes" in err
    assert "Traceback" not in err
    dry = json.loads(_cli(capsys, "gc", "--dry-run", "--json")[0])
    assert dry["dry_run"] is True and dry["rows_deleted"] == 3 and dry["objects_deleted"] == 3
    assert len(client.metadata.artifacts.for_run(old.id)) == 3          # nothing changed yet
    done = json.loads(_cli(capsys, "gc", "--yes", "--older-than", "30d", "--json")[0])
    assert done["rows_deleted"] == 3 and done["bytes_freed"] == dry["bytes_freed"] > 0
    assert client.metadata.artifacts.for_run(old.id) == []
    table, _ = _cli(capsys, "gc", "--yes")
    assert "Artifact rows removed: 0" in table
    _out, err = _cli(capsys, "gc", "--dry-run", "--older-than", "soon", code=2)
    assert "--older-than 'soon' is not a length of time" in err


def test_gc_dry_run_reports_the_checkpoints_it_would_remove(client, capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    run = p.training.run(client=client)                       # succeeded: its checkpoint is garbage
    doc = f"{client.artifacts.base}/checkpoints/{run.id}/trains.json"
    table, _ = _cli(capsys, "gc", "--dry-run")
    assert "checkpoints" in table and "1 (0 kept)" in table and Path(doc).exists()
    dry = json.loads(_cli(capsys, "gc", "--dry-run", "--json")[0])
    assert dry["checkpoints_deleted"] == 1 and dry["roots"][0]["checkpoint_bytes"] > 0
    done = json.loads(_cli(capsys, "gc", "--yes", "--json")[0])
    assert done["checkpoints_deleted"] == 1 and not Path(doc).exists()
    assert done["bytes_freed"] >= dry["roots"][0]["checkpoint_bytes"]


def test_storage_and_cost_commands_print_tables_and_json(client, capsys, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    run = p.chain.run(client=client, seed=2)
    add_attempts(client.metadata, run.id, {"load": [(10.0, 10.0, 1 << 30, None)]})
    by_pipeline = json.loads(_cli(capsys, "storage", "--json")[0])
    assert by_pipeline["rows"][0]["name"] == "chain" and by_pipeline["unique_bytes"] > 0
    assert "Stored bytes by model" in _cli(capsys, "storage", "--by", "model")[0]
    rec = json.loads(_cli(capsys, "cost", "recommend", f"{PIPELINE_FILE}:chain", "--last", "3", "--json")[0])
    load = next(s for s in rec["steps"] if s["step"] == "load")
    assert rec["estimate"] is True and load["recommended"]["cpus"] == 1.5 and load["instances"]["aws"]["name"]
    table, _ = _cli(capsys, "cost", "recommend", f"{PIPELINE_FILE}:chain")
    assert "Right-sizing chain" in table and "t3.medium" in table and "as of" in table
    report = json.loads(_cli(capsys, "cost", "report", "--since", "7d", "--by", "step", "--json")[0])
    assert {r["name"] for r in report["rows"]} >= {"chain/load", "chain/fit"} and report["estimate"] is True
    text, _ = _cli(capsys, "cost", "report")
    assert "Estimates, not a bill" in text and "as of 2025-06-01" in text.replace("\n", " ")
    tagged = json.loads(_cli(capsys, "run", f"{PIPELINE_FILE}:chain", "-p", "seed=9", "--tag", "team=search",
                             "--json")[0])
    by_tag = json.loads(_cli(capsys, "cost", "report", "--by", "tag", "--json")[0])
    assert tagged["status"] == "succeeded" and {"team=search", "(untagged)"} <= {r["name"] for r in by_tag["rows"]}
    assert by_tag["total"] is None                                  # tag rows overlap: no total
    _out, err = _cli(capsys, "run", f"{PIPELINE_FILE}:chain", "--tag", "team", code=2)
    assert "--tag 'team' is not key=value" in err
    _out, err = _cli(capsys, "cost", "report", "--by", "team", code=2)
    assert "--by 'team' is not a grouping" in err
    bad = tmp_path / "prices.yaml"
    bad.write_text("as_of: 2025-01-01\nsource: mine\nclouds: {aws: {region: x}}\n")
    monkeypatch.setenv("CONVEYOR_PRICES", str(bad))
    _out, err = _cli(capsys, "cost", "report", code=2)
    assert "field clouds.aws.reference_instance" in err and "Traceback" not in err


def test_gc_on_a_terminal_shows_the_plan_and_asks(client, settings, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    old = p.chain.run(client=client, seed=4)
    age_run(client.metadata, old.id, 40)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env.update(CONVEYOR_HOME=str(settings.home), COLUMNS="200", PYTHONPATH=str(REPO))
    leader, follower = os.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "conveyor", "gc"], stdin=follower, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, cwd=tmp_path, env=env, text=True)
        os.write(leader, b"y\n")
        out, _ = proc.communicate(timeout=120)
    finally:
        os.close(leader)
        os.close(follower)
    assert proc.returncode == 0, out
    assert "gc would remove" in out and "Remove 3 artifact row(s) and 3 object(s)" in out
    assert "Artifact rows removed: 3" in out
    assert client.metadata.artifacts.for_run(old.id) == []
