"""``parse_memory``: the one reading of a step's ``memory=``, shared by the DSL, executors and export targets."""

from __future__ import annotations

import pytest

import conveyor as cv
from conveyor.dsl.resources import parse_memory
from conveyor.errors import PipelineDefinitionError


@pytest.mark.parametrize(("text", "size"), [
    ("512Mi", 512 * 2**20), ("2G", 2 * 10**9), ("1.5GiB", 3 * 2**29), ("2GB", 2 * 10**9), ("1048576", 2**20),
    ("4gi", 4 * 2**30), (" 8 Ki ", 8 * 2**10), ("1P", 10**15), (3 * 2**30, 3 * 2**30), (2.5e9, 2_500_000_000)])
def test_sizes_in_decimal_and_binary_units_become_bytes(text: object, size: int) -> None:
    assert parse_memory(text, "fit") == size


@pytest.mark.parametrize("bad", ["lots", "-1G", "2X", "", True, None, "1.2.3Gi"])
def test_a_size_no_one_can_read_names_the_step_and_the_way_to_write_it(bad: object) -> None:
    with pytest.raises(PipelineDefinitionError, match=rf"Step 'fit': memory={bad!r} is not a size\. Write it like"):
        parse_memory(bad, "fit")


def test_a_step_declaring_an_unreadable_memory_fails_when_declared() -> None:
    def fit() -> int:
        return 1

    with pytest.raises(PipelineDefinitionError, match="Step 'fit': memory='lots' is not a size"):
        cv.step(memory="lots")(fit)
    assert cv.step(memory="2Gi")(fit).spec.memory == "2Gi"
