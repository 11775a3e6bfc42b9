"""Resource accounting: every step attempt records what it used (runtime/usage.py, store/artifacts/tally.py)."""

from __future__ import annotations

import pytest

from tests.runtime import usage_pipelines as up


def _rows(client, run_id: str, name: str) -> list[dict[str, object]]:
    return [a for a in client.metadata.steps.attempts(run_id) if a["name"] == name]


@pytest.mark.parametrize("executor", ["thread", "process"])
def test_memory_and_cpu_of_a_heavy_step_are_measured(client, executor: str) -> None:
    run = up.heavy_pipeline.run(mb=100, cpu_s=0.3, client=client, executor=executor)
    (row,) = _rows(client, run.id, "heavy")
    assert row["status"] == "completed" and row["executor"] == executor and row["attempt"] == 1
    assert 100 * 2**20 <= row["peak_rss_bytes"] < 2 * 2**30
    assert 0.25 <= row["cpu_s"] <= row["wall_s"] + 0.05 and row["wall_s"] < 60
    assert row["gpu_s"] is None and row["gpu_peak_bytes"] is None    # no GPU here
    assert row["host"] and row["ended_at"] >= row["started_at"]


@pytest.mark.parametrize("executor", ["thread", "process"])
def test_bytes_written_and_read_match_the_artifact(client, executor: str) -> None:
    run = up.bytes_pipeline.run(kib=256, client=client, executor=executor)
    sid = run.steps["payload"].id
    (artifact,) = client.metadata.steps.outputs([sid])[sid].values()
    (wrote,) = _rows(client, run.id, "payload")
    (read,) = _rows(client, run.id, "read_back")
    assert artifact.size >= 256 * 1024 and wrote["bytes_written"] == artifact.size
    # the process executor loads the input from the store; threads pass it in memory
    assert read["bytes_read"] == (artifact.size if executor == "process" else 0)
    assert read["bytes_written"] == 6      # the inline result, "262144"


@pytest.mark.parametrize("name, field", [("CONVEYOR_ACCOUNTING", "accounting"),
                                         ("CONVEYOR_SERVE_COMPILED_PREDICT", "serve_compiled_predict"),
                                         ("CONVEYOR_RAY_SHARED_ROOT", "ray_shared_root")])
def test_on_off_settings_take_the_usual_spellings_and_reject_any_other(tmp_path, name: str, field: str) -> None:
    from conveyor.config import load_settings
    from conveyor.errors import ConfigurationError

    for raw, want in [("1", True), ("yes", True), (" ON ", True), ("True", True),
                      ("0", False), ("no", False), ("off", False), ("FALSE", False)]:
        assert getattr(load_settings(env={name: raw}, cwd=tmp_path), field) is want, raw
    with pytest.raises(ConfigurationError, match=f"{name}='maybe' is not on or off"):
        load_settings(env={name: "maybe"}, cwd=tmp_path)
    (tmp_path / "conveyor.toml").write_text(f"[conveyor]\n{field} = false\n")
    assert getattr(load_settings(env={}, cwd=tmp_path), field) is False


def test_accounting_off_writes_no_rows(settings) -> None:
    from conveyor.config import load_settings
    from conveyor.runtime.client import Client

    assert load_settings(env={"CONVEYOR_ACCOUNTING": "0"}).accounting is False
    assert load_settings(env={}).accounting is True
    off = Client(settings.with_overrides(accounting=False))
    try:
        run = up.bytes_pipeline.run(kib=1, client=off)
        assert run.status == "succeeded" and off.metadata.steps.attempts(run.id) == []
    finally:
        off.close()
