"""The price table: the shipped one is dated and complete; a user's file replaces it and a wrong field is named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conveyor.config import load_settings
from conveyor.cost.prices import SHIPPED, load_prices
from conveyor.errors import ConfigurationError


def test_the_shipped_table_has_three_clouds_with_dated_prices() -> None:
    table = load_prices()
    assert set(table.clouds) == {"aws", "gcp", "azure"} and table.as_of.year >= 2025 and table.source
    for cloud in table.clouds.values():
        assert any(i.gpus for i in cloud.instances) and all(i.spot is None or i.spot < i.on_demand
                                                             for i in cloud.instances)
    assert "as of" in table.describe() and str(SHIPPED) in table.describe()


def test_smallest_fit_is_the_cheapest_instance_that_holds_the_request() -> None:
    aws = load_prices().cloud("aws")
    assert aws.smallest_fit(1.5, 2.5).name == "t3.medium"
    assert aws.smallest_fit(3, 20).name == "r6i.xlarge"
    assert aws.smallest_fit(2, 8, gpus=1).name == "g4dn.xlarge"
    assert aws.smallest_fit(64, 8) is None
    assert aws.vcpu_hour() == pytest.approx(0.096 / 2)


def _custom(tmp_path: Path, change) -> Path:
    data = yaml.safe_load(SHIPPED.read_text())
    change(data)
    path = tmp_path / "prices.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_user_file_replaces_the_table_through_the_setting(tmp_path: Path, monkeypatch) -> None:
    def cheaper(d):
        d["as_of"] = "2026-01-15"
        d["clouds"]["aws"]["instances"][0]["on_demand"] = 0.01

    monkeypatch.setenv("CONVEYOR_PRICES", str(_custom(tmp_path, cheaper)))
    table = load_prices(load_settings().prices)
    assert table.as_of.isoformat() == "2026-01-15" and table.clouds["aws"].instances[0].on_demand == 0.01
    assert str(tmp_path) in table.describe()


@pytest.mark.parametrize(("change", "field"), [
    (lambda d: d["clouds"]["aws"]["instances"][2].update(vcpus=-1), "clouds.aws.instances.2.vcpus"),
    (lambda d: d["clouds"]["gcp"]["instances"][0].update(cores=2), "clouds.gcp.instances.0.cores"),
    (lambda d: d.pop("as_of"), "as_of"),
    (lambda d: d["clouds"]["azure"].update(reference_instance="nope"), "clouds.azure"),
])
def test_a_bad_file_is_refused_naming_the_field(tmp_path: Path, change, field: str) -> None:
    with pytest.raises(ConfigurationError) as err:
        load_prices(_custom(tmp_path, change))
    msg = str(err.value)
    assert f"field {field}" in msg and "\n" not in msg and "CONVEYOR_PRICES" in msg


def test_a_missing_or_malformed_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot be read"):
        load_prices(tmp_path / "none.yaml")
    (tmp_path / "bad.yaml").write_text("as_of: [\n")
    with pytest.raises(ConfigurationError, match="not valid YAML at line"):
        load_prices(tmp_path / "bad.yaml")
    with pytest.raises(ConfigurationError, match="no cloud 'ibm'.*aws, gcp, azure"):
        load_prices().cloud("ibm")
