"""A cold load with the network disabled still counts, and leaves no tiktoken cache behind."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline import recount
from pipeline.recount import TokenCount, count_request


def _refuse(*args: object, **kwargs: object) -> None:
    raise OSError("network access attempted during an offline recount test")


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No sockets, an empty tiktoken cache, HF offline, and cold module caches."""
    for name in ("connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, _refuse)
    monkeypatch.setattr(socket, "create_connection", _refuse)
    monkeypatch.setattr(socket, "getaddrinfo", _refuse)
    cache = tmp_path / "tiktoken-cache"
    cache.mkdir()
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    recount._reset_caches()
    yield cache
    recount._reset_caches()


def test_cold_load_counts_offline(offline: Path) -> None:
    with pytest.raises(OSError, match="network access attempted"):
        socket.create_connection(("pypi.org", 443))  # the guard is in place
    messages = json.dumps([{"role": "user", "content": "Hello from InferGate."}])
    gpt = count_request("openai/gpt-5.5", messages, "Hello from InferGate.")
    dsv4 = count_request("deepseek-v4-flash", messages, "Hello from InferGate.")
    assert gpt == TokenCount(3 + 1 + 5 + 3, 5, "o200k_base")
    assert dsv4 == TokenCount(1 + 1 + 5 + 2, 5, "deepseek_v4")
    assert list(offline.iterdir()) == []  # tiktoken wrote nothing to the user's cache
    assert os.environ["TIKTOKEN_CACHE_DIR"] == str(offline)  # and the variable is restored
