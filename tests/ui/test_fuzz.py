"""Fuzzing the dashboard's API from its own OpenAPI description: no 5xx, every error JSON naming a field."""

from __future__ import annotations

from typing import Any

import pytest

from tests.ui.conftest import make_key

EXAMPLES = 3


@pytest.mark.slow
def test_fuzzing_every_api_route(home: Any) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    from conveyor.ui.app import create_ui_app
    from tests.fuzz.test_http_fuzz import assert_well_answered

    key = make_key(home, "alice")           # an approver: the actions run, not only their refusals
    app = create_ui_app(home)
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", app, headers={"Authorization": f"Bearer {key}"})
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {"/api/runs", "/api/models/{name}/versions/{version}/approve"} <= {op.path for op in operations}
    tried: dict[str, int] = {}
    for op in operations:
        # schema-violating cases only where a body can violate it: generating them for query strings
        # costs hypothesis far more than the requests (and a query string is text whatever it holds)
        modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if op.method.upper() == "POST" else \
            (GenerationMode.POSITIVE,)
        for mode in modes:
            @given(case=op.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            def fuzz(case: Any) -> None:
                response = case.call(headers={"Authorization": f"Bearer {key}"})
                tried[op.label] = tried.get(op.label, 0) + 1
                assert_well_answered(response.status_code, response.headers.get("content-type", ""),
                                     response.content, f"{case.method} {case.formatted_path} {case.query}")

            try:
                fuzz()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE
    assert set(tried) == {op.label for op in operations}
