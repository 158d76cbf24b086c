"""The crash scenario is built once per session (three sample nightly runs) and shared."""

from __future__ import annotations

import pytest

from tests.faults.harness import Scenario


@pytest.fixture(scope="session")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    return Scenario.build(tmp_path_factory.mktemp("scenario"))
