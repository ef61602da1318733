import json

import pytest
from typer.testing import CliRunner

from controller.cli import app

runner = CliRunner()


def plan_json(*args: str) -> dict[str, object]:
    result = runner.invoke(app, ["plan", *args, "--output", "json"])
    assert result.exit_code == 0, result.output
    document: dict[str, object] = json.loads(result.stdout)
    return document


@pytest.mark.parametrize(
    ("instance_type", "secondary", "prefix", "branches"),
    [("m5.large", 29, 110, 9), ("c5.4xlarge", 234, 110, 54)],
)
def test_plan_json_gives_the_published_figures(
    instance_type: str, secondary: int, prefix: int, branches: int
) -> None:
    document = plan_json("--instance-type", instance_type)
    assert document["max_pods"] == secondary
    assert document["branch_enis"] == branches
    assert {"max_enis", "ipv4_per_eni"} <= document.keys()
    assert plan_json("--instance-type", instance_type, "--prefix-delegation")["max_pods"] == prefix


def test_plan_lists_the_pre_allocation_for_a_new_node() -> None:
    document = plan_json("--instance-type", "m5.large", "--prefix-delegation", "--warm-prefix-target", "3")
    assert document["plan"] == [{"kind": "AssignPrefixes", "eni_id": "primary", "count": 3}]


def test_unknown_instance_type_exits_2_naming_the_type() -> None:
    result = runner.invoke(app, ["plan", "--instance-type", "m5.huge"])
    assert result.exit_code == 2
    assert "m5.huge" in result.output


def test_bad_setting_names_the_option() -> None:
    result = runner.invoke(app, ["plan", "--instance-type", "m5.large", "--max-eni", "9"])
    assert result.exit_code == 2
    assert "--max-eni" in result.output


def test_table_output_shows_limits_and_plan() -> None:
    result = runner.invoke(app, ["plan", "--instance-type", "c5.4xlarge", "--pod-eni"])
    assert result.exit_code == 0
    assert "234" in result.output
    assert "trunk ENI" in result.output


def test_plan_shows_how_many_shared_eni_group_sets_a_new_node_holds() -> None:
    # c5.4xlarge: 8 ENIs, less the primary and the trunk; m5.large: 3, less the primary
    assert plan_json("--instance-type", "c5.4xlarge", "--pod-eni")["shared_eni_sets"] == 6
    assert plan_json("--instance-type", "m5.large")["shared_eni_sets"] == 2
    assert plan_json("--instance-type", "m5.large", "--pod-eni")["shared_eni_sets"] == 1
    result = runner.invoke(app, ["plan", "--instance-type", "m5.large"])
    assert "shared ENI group sets" in result.output
