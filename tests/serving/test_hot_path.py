"""The serving hot path's shortcuts must answer exactly as the careful path does."""

from __future__ import annotations

import datetime as dt
import io
import time

import numpy as np
import pytest

from conveyor.errors import InvalidRequest
from conveyor.serving.access_log import AccessLog
from conveyor.serving.catalog import ColumnSpec, Signature
from conveyor.serving.prediction_log import PredictionLog, read_prediction_log
from conveyor.serving.schema import RowBlock, from_rows, validate

SIG = Signature(tuple(ColumnSpec(n, d) for n, d in [("a", "float64"), ("b", "int64"), ("c", "float32")]))
NAMES = ["a", "b", "c"]


def careful(rows: list[list]) -> dict[str, np.ndarray]:
    """The column-by-column path, forced by handing validate plain columns."""
    return validate(RowBlock(rows, NAMES, "instances").to_columns(), SIG).columns


def test_numeric_rows_take_one_matrix_and_agree_with_the_column_path() -> None:
    rows = [[1.5, 2, 3.25], [0.0, -7, 1e-3], [2, 4.0, 5]]
    batch = validate(from_rows(rows, NAMES, "instances"), SIG)
    assert batch.matrix is not None and batch.matrix.shape == (3, 3)
    expected = careful(rows)
    assert list(batch.columns) == NAMES
    for name in NAMES:
        np.testing.assert_array_equal(batch.columns[name], expected[name])
        assert batch.columns[name].dtype == expected[name].dtype


@pytest.mark.parametrize("rows, field, message", [
    ([[1.0, True, 3.0]], "b", "got bool"),                 # a bool is not a number here
    ([[1.0, 2.5, 3.0]], "b", "whole numbers"),             # an int column with a fraction
    ([[1.0, 2, 3.0], [1.0, 2]], "instances[1]", "has 2 values"),
    ([[1.0, "x", 3.0]], "b", "got str"),
    ([[1.0, None, 3.0]], "b", "missing value"),
])
def test_rows_the_matrix_path_refuses_get_the_precise_error(rows, field, message) -> None:
    with pytest.raises(InvalidRequest) as info:
        validate(from_rows(rows, NAMES, "instances"), SIG)
    assert info.value.field == field and message in info.value.message


def test_numeric_text_is_accepted_as_before() -> None:
    rows = [["1.5", "2", "3"]]
    batch = validate(from_rows(rows, NAMES, "instances"), SIG)
    assert batch.columns["b"].tolist() == [2] and batch.columns["b"].dtype == careful(rows)["b"].dtype


def test_a_boolean_among_ones_and_zeros_is_still_refused() -> None:
    with pytest.raises(InvalidRequest, match="got bool"):
        validate(from_rows([[1.0, 1, 0.0], [0.0, 0, True]], NAMES, "instances"), SIG)
    ok = validate(from_rows([[1.0, 1, 0.0], [0.0, 0, 1]], NAMES, "instances"), SIG)
    assert ok.matrix is not None and ok.columns["c"].tolist() == [0.0, 1.0]


def test_a_2d_tensor_goes_straight_through() -> None:
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    batch = validate(RowBlock(arr, NAMES, "inputs[0]"), SIG)
    assert batch.matrix is not None and batch.to_model_input(object()).shape == (2, 3)
    assert batch.columns["b"].dtype == np.int64


def test_models_fitted_on_named_columns_get_a_dataframe() -> None:
    class Named:
        feature_names_in_ = np.array(NAMES)

    batch = validate(from_rows([[1.0, 2, 3.0]], NAMES, "instances"), SIG)
    frame = batch.to_model_input(Named())
    assert list(frame.columns) == NAMES and frame["b"].dtype == np.int64


def test_access_log_writes_json_lines_off_the_request_path() -> None:
    import orjson

    sink = io.StringIO()
    log = AccessLog(sink, interval_s=60)
    for i in range(5):
        log.write(request_id=f"r{i}", status=200, ms=1.5)
    assert sink.getvalue() == ""          # nothing written by the callers themselves
    log.close()
    lines = [orjson.loads(line) for line in sink.getvalue().splitlines()]
    assert [line["request_id"] for line in lines] == [f"r{i}" for i in range(5)]


def test_access_log_drops_and_counts_beyond_its_cap() -> None:
    sink = io.StringIO()
    log = AccessLog(sink, interval_s=60, max_lines=3)
    for i in range(5):
        log.write(i=i)
    log.close()
    assert log.dropped == 2 and len(sink.getvalue().splitlines()) == 3


def test_prediction_log_chunks_keep_every_row_across_endpoints_and_hours(tmp_path) -> None:
    from conveyor.serving.schema import Batch

    log = PredictionLog(str(tmp_path), interval_s=60, chunk_rows=50, row_group_rows=16)
    base = dt.datetime(2026, 1, 5, 10, 59, 50, tzinfo=dt.UTC).timestamp()
    expected: dict[str, list[float]] = {"e1": [], "e2": []}
    for i in range(100):
        endpoint = "e1" if i % 3 else "e2"
        rows = 1 + i % 4
        m = np.full((rows, 2), float(i))
        batch = Batch(None, rows, matrix=m, names=["p", "q"], dtypes=["float64", "int64"])
        log.record(request_id=f"r{i}", ts=base + i * 0.2, endpoint=endpoint, model="m", version=1 + i % 2,
                   shadow=False, latency_ms=1.0, batch=batch, prediction=np.arange(rows) + i * 10.0)
        expected[endpoint] += [float(i)] * rows
    log.close()
    for endpoint, values in expected.items():
        table = read_prediction_log(str(tmp_path), endpoint).sort_by([("ts", "ascending"), ("row", "ascending")])
        assert table.column("feature.p").to_pylist() == values
        assert set(table.column("hour").to_pylist()) == {10, 11}      # the hour boundary splits files
        assert table.column("feature.q").type == "int64"
    assert log.dropped_rows == 0


def test_block_tables_own_their_data_so_blocks_can_be_reused() -> None:
    from conveyor.serving.prediction_log import _Block

    for names, dtypes in [(("x",), ("float64",)), (("p", "q", "r"), ("float64", "int64", "bool"))]:
        block = _Block(names, dtypes, 8)
        first = np.arange(3 * len(names), dtype=float).reshape(3, len(names)) % 2
        block.add(first, np.array([0.1, 0.2, 0.3]), "r1", 100.0, "m", 4, False, 1.5)
        table = block.table()
        block.reset(names, dtypes)                    # reused: the next requests overwrite the arrays
        block.add(np.full((3, len(names)), 7.0), np.array([9.0, 9.0, 9.0]), "r2", 200.0, "m", 5, True, 2.5)
        t = table.to_pydict()
        assert t["prediction"] == [0.1, 0.2, 0.3] and t["request_id"] == ["r1"] * 3 and t["row"] == [0, 1, 2]
        assert t["version"] == [4] * 3 and t["shadow"] == [False] * 3
        for j, (name, dtype) in enumerate(zip(names, dtypes, strict=True)):
            assert table.column(f"feature.{name}").type == dtype
            assert t[f"feature.{name}"] == first[:, j].astype(dtype).tolist()


def test_prediction_log_reuses_blocks_across_flushes_without_losing_rows(tmp_path) -> None:
    import pyarrow.parquet as pq

    from conveyor.serving.schema import Batch

    log = PredictionLog(str(tmp_path), interval_s=60, chunk_rows=8, row_group_rows=5)
    made = []
    real_block = log._block
    log._block = lambda *a: made.append(real_block(*a)) or made[-1]
    sent: list[tuple[str, int, float]] = []
    now = time.time()
    for flush in range(3):
        for i in range(40):
            rows = 1 + i % 3
            rid = f"f{flush}-{i}"
            m = np.arange(rows, dtype=float)[:, None] + 1000 * flush + i
            log.record(request_id=rid, ts=now, endpoint="e", model="m", version=1, shadow=False, latency_ms=1.0,
                       batch=Batch(None, rows, matrix=m, names=["x"], dtypes=["float64"]), prediction=m[:, 0] * 2)
            sent += [(rid, r, float(m[r, 0])) for r in range(rows)]
        log.flush()
    log.close()
    assert len({id(b) for b in made}) < len(made)       # emptied blocks came back and were filled again
    t = read_prediction_log(str(tmp_path), "e").to_pydict()
    got = sorted(zip(t["request_id"], t["row"], t["feature.x"], strict=True))
    assert got == sorted(sent) and t["prediction"] == [2 * x for x in t["feature.x"]]
    for path in log.written_files:
        meta = pq.ParquetFile(path).metadata
        assert meta.num_row_groups > 1 and all(meta.row_group(g).num_rows <= 5 for g in range(meta.num_row_groups))


def test_prediction_log_keeps_text_predictions_next_to_numeric_ones(tmp_path) -> None:
    from conveyor.serving.schema import Batch

    log = PredictionLog(str(tmp_path), interval_s=60)
    m = np.array([[1.0], [2.0]])
    batch = Batch(None, 2, matrix=m, names=["x"], dtypes=["float64"])
    log.record(request_id="num", ts=time.time(), endpoint="e", model="m", version=1, shadow=False, latency_ms=1.0,
               batch=batch, prediction=np.array([0.25, 0.75]))
    log.record(request_id="txt", ts=time.time(), endpoint="e", model="m", version=2, shadow=False, latency_ms=1.0,
               batch=batch, prediction=np.array(["yes", "no"]))
    log.close()
    t = read_prediction_log(str(tmp_path), "e").sort_by([("request_id", "ascending"), ("row", "ascending")]).to_pydict()
    assert t["request_id"] == ["num", "num", "txt", "txt"] and t["feature.x"] == [1.0, 2.0, 1.0, 2.0]
    assert t["prediction"][:2] == [0.25, 0.75] and t["prediction_text"][2:] == ["yes", "no"]


def test_prediction_log_keeps_request_rows_in_order(tmp_path) -> None:
    log = PredictionLog(str(tmp_path), interval_s=60)
    log.record(request_id="only", ts=time.time(), endpoint="e", model="m", version=3, shadow=True, latency_ms=2.5,
               columns={"a": np.array([1.0, 2.0, 3.0])}, prediction=np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]]))
    log.close()
    t = read_prediction_log(str(tmp_path), "e").sort_by("row").to_pydict()
    assert t["row"] == [0, 1, 2] and t["prediction"] == [0.1, 0.8, 0.5] and t["shadow"] == [True] * 3
    assert t["version"] == [3] * 3 and t["request_id"] == ["only"] * 3


def test_model_cache_evicts_least_recently_used_unpinned_first() -> None:
    from conveyor.serving.catalog import LoadedModel, ModelKey
    from conveyor.serving.models import ModelCache

    loads: list[ModelKey] = []

    def load(key: ModelKey) -> LoadedModel:
        loads.append(key)
        return LoadedModel(key, object(), None, size_bytes=100)

    cache = ModelCache(load, cap_bytes=250)
    a, b, c, d = (ModelKey("m", v) for v in range(1, 5))
    cache.pinned = {a}
    cache.get(a), cache.get(b)
    cache.get(b)
    cache.get(c)                       # 300 bytes > 250: b is the oldest unpinned one
    assert set(cache.keys()) == {a, c}
    cache.get(d)                       # c goes; a stays because it is routed right now
    assert set(cache.keys()) == {a, d}
    cache.get(b)                       # evicted models come back on demand
    assert loads == [a, b, c, d, b]
    assert cache.used_bytes() <= 250


def test_reading_the_log_unites_layouts_and_skips_hours_outside_the_window(tmp_path) -> None:
    from conveyor.serving.schema import Batch

    log = PredictionLog(str(tmp_path), interval_s=60)
    ten = dt.datetime(2026, 3, 1, 10, 30, tzinfo=dt.UTC).timestamp()
    old = Batch(None, 1, matrix=np.array([[1.0, 2.0]]), names=["a", "b"], dtypes=["float64", "float64"])
    new = Batch(None, 1, matrix=np.array([[3.0, 4.0, 5.0]]), names=["a", "b", "c"], dtypes=["float64"] * 3)
    log.record(request_id="v1", ts=ten, endpoint="e", model="m", version=1, shadow=False, latency_ms=1.0,
               batch=old, prediction=np.array([0.1]))
    log.record(request_id="v2", ts=ten + 60, endpoint="e", model="m", version=2, shadow=False, latency_ms=1.0,
               batch=new, prediction=np.array([0.2]))
    log.record(request_id="text", ts=ten + 120, endpoint="e", model="m", version=3, shadow=False, latency_ms=1.0,
               columns={"a": np.array([6.0]), "s": np.array(["x"], dtype=object)}, prediction=np.array([0.3]))
    log.close()
    assert len(log.written_files) == 3                   # one file per layout
    t = read_prediction_log(str(tmp_path), "e").sort_by("ts").to_pydict()
    assert t["request_id"] == ["v1", "v2", "text"]
    assert t["feature.a"] == [1.0, 3.0, 6.0] and t["feature.c"] == [None, 5.0, None] and t["feature.s"] == [None, None, "x"]

    # A broken file in another hour is never opened by a read of this hour's window.
    other = tmp_path / "predictions" / "endpoint=e" / "date=2026-03-01" / "hour=08"
    other.mkdir(parents=True)
    (other / "broken.parquet").write_bytes(b"not parquet")
    window = read_prediction_log(str(tmp_path), "e", since=dt.datetime(2026, 3, 1, 10, 31),
                                 until=dt.datetime(2026, 3, 1, 11, 0))
    assert sorted(window.column("request_id").to_pylist()) == ["text", "v2"]
    assert read_prediction_log(str(tmp_path), "e", since=dt.datetime(2026, 3, 1, 12)).num_rows == 0


def test_a_failed_write_leaves_no_half_file_and_counts_the_rows(tmp_path, monkeypatch) -> None:
    import pyarrow.parquet as pq

    dropped: list[int] = []
    log = PredictionLog(str(tmp_path), interval_s=60, row_group_rows=2, on_drop=dropped.append)
    log.record(request_id="r", ts=time.time(), endpoint="e", model="m", version=1, shadow=False, latency_ms=1.0,
               columns={"a": np.arange(5.0)}, prediction=np.zeros(5))
    calls = []

    def failing(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(self, *args, **kwargs)

    real = pq.ParquetWriter.write_batch
    monkeypatch.setattr(pq.ParquetWriter, "write_batch", failing)
    assert log.flush() == 0
    monkeypatch.undo()
    log.close()
    assert dropped == [5] and log.dropped_rows == 5
    assert not list((tmp_path / "predictions").rglob("*.parquet"))


def test_fixed_post_paths_go_where_the_router_would_send_them() -> None:
    from starlette.responses import Response
    from starlette.routing import Route

    from conveyor.serving.app import fixed_posts

    async def a(request):
        return Response("a")

    async def b(request):
        return Response("b")

    shadowing = Route("/{anything}", a, methods=["POST"])
    plain = Route("/invocations", b, methods=["POST"])
    getter = Route("/score", b, methods=["GET"])
    assert fixed_posts([plain], [plain, shadowing]) == {"/invocations": b}
    assert fixed_posts([plain], [shadowing, plain]) == {}      # the router picks the pattern first
    assert fixed_posts([plain, getter, shadowing], [plain, getter, shadowing]) == {"/invocations": b}
