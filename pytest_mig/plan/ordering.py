"""Order test items so cases needing the same MIG layout run back to back.

Each layout change costs a reconfiguration of the GPU; grouping makes the count equal to
the number of distinct layouts. Groups keep the order of their first item, and items keep
their order inside a group, so the result is otherwise the collection order.
"""
from __future__ import annotations

import functools
from typing import Callable, Hashable, Sequence, TypeVar

from pytest_mig.errors import MigError
from pytest_mig.gpu.planner import describe_request, plan_case
from pytest_mig.gpu.profiles import get_model
from pytest_mig.types import Case

T = TypeVar("T")


def group_by_key(items: Sequence[T], key: Callable[[T], Hashable | None]) -> list[T]:
    """Stable grouping: items with equal keys together; a None key stays a group of its own."""
    groups: dict[object, list[T]] = {}
    for n, item in enumerate(items):
        k = key(item)
        groups.setdefault(("own", n) if k is None else ("key", k), []).append(item)
    return [item for group in groups.values() for item in group]


@functools.lru_cache(maxsize=256)
def _planned(gpu_model: str, profile: str, background: int) -> str:
    try:
        model = get_model(gpu_model)
        return describe_request(model, plan_case(model, profile, background))
    except MigError:  # a model without a table: the inputs of the plan stand for it
        return f"{profile} + {background} background"


def case_layout(case: Case) -> str | None:
    """The layout a case runs on ('4 x 1g.10gb' on A100-SXM4-80GB), None for a skipped case."""
    if case.skip_reason:
        return None
    if case.layout:  # a layout suite's case: its named layout
        return f"{case.gpu_model}: layout {case.layout}"
    return f"{case.gpu_model}: {_planned(case.gpu_model, case.profile, len(case.background))}"


def order_cases(items: Sequence[T], case_of: Callable[[T], Case | None]) -> list[T]:
    """`items` grouped by the layout of their case; items without a case keep their place."""
    def key(item: T) -> str | None:
        case = case_of(item)
        return None if case is None else case_layout(case)
    return group_by_key(items, key)
