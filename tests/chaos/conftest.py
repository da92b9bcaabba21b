"""The long chaos experiments (``@pytest.mark.chaos(long=True)``) run only when chaos tests
are selected (``make chaos``: ``pytest -m chaos``); the others also run in ``make test``."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "chaos" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="long chaos experiment: run with make chaos (-m chaos)")
    for item in items:
        marker = item.get_closest_marker("chaos")
        if marker is not None and marker.kwargs.get("long"):
            item.add_marker(skip)
