import pytest

from controller.core.instance_limits import (
    InstanceCatalog,
    UnknownInstanceTypeError,
    parse_branch_limits,
)
from controller.instance_data import shipped_catalog
from controller.ports.ec2 import InstanceTypeInfo


@pytest.mark.parametrize(
    ("instance_type", "secondary", "prefix", "branches"),
    [
        ("m5.large", 29, 110, 9),
        ("c5.4xlarge", 234, 110, 54),
        ("m5.xlarge", 58, 110, 18),
        ("m5.metal", 737, 250, 120),
    ],
)
def test_max_pods_matches_the_eks_calculator(
    instance_type: str, secondary: int, prefix: int, branches: int
) -> None:
    limits = shipped_catalog().get(instance_type)
    assert limits.max_pods(prefix_delegation=False) == secondary
    assert limits.max_pods(prefix_delegation=True) == prefix
    assert limits.branch_enis == branches


def test_custom_networking_uses_one_eni_fewer() -> None:
    limits = shipped_catalog().get("m5.large")
    assert limits.max_pods(prefix_delegation=False, custom_networking=True) == 2 * 9 + 2


def test_unknown_type_names_the_type() -> None:
    with pytest.raises(UnknownInstanceTypeError, match=r"'m5\.huge'"):
        shipped_catalog().get("m5.huge")


def test_non_nitro_types_cannot_trunk_even_with_a_table_entry() -> None:
    catalog = InstanceCatalog(
        {
            "x1.old": InstanceTypeInfo(
                instance_type="x1.old", max_enis=2, ipv4_per_eni=4, vcpus=1, nitro=False
            )
        },
        {"x1.old": 9},
    )
    assert catalog.get("x1.old").trunking is False
    assert shipped_catalog().get("t2.micro").trunking is False


def test_configured_branch_limits_extend_the_builtin_table() -> None:
    catalog = shipped_catalog(parse_branch_limits("m6i.large=9, m6i.xlarge=18"))
    assert catalog.get("m6i.large").branch_enis == 9
    assert catalog.get("m5.large").branch_enis == 9


@pytest.mark.parametrize("bad", ["m6i.large", "m6i.large=x", "=3", "m6i.large=500"])
def test_bad_branch_limit_settings_name_the_entry(bad: str) -> None:
    with pytest.raises(ValueError, match="BRANCH_ENI_LIMITS"):
        parse_branch_limits(bad)
