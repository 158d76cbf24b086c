"""Shared fixtures: the process-wide counters, built once per test session."""

from __future__ import annotations

import pytest

from pipeline import recount
from pipeline.recount._deepseek import DeepSeekCounter
from pipeline.recount._o200k import O200kCounter


@pytest.fixture(scope="session")
def o200k() -> O200kCounter:
    counter = recount._counter("o200k_base")
    assert isinstance(counter, O200kCounter)
    return counter


@pytest.fixture(scope="session")
def deepseek() -> DeepSeekCounter:
    counter = recount._counter("deepseek_v4")
    assert isinstance(counter, DeepSeekCounter)
    return counter
