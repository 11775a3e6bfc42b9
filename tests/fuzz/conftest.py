"""The fuzzing suite starts real servers with the serving suite's fixtures."""

from tests.serving.conftest import serve_process  # noqa: F401  (a fixture)
