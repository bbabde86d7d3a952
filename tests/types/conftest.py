"""Fixtures of the wire-type tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).resolve().parent.parent / "data"


@pytest.fixture(scope="session")
def wire_schema() -> dict[str, Any]:
    """The JSON Schema generated from openai-chatkit 1.6.5's models (see tests/data)."""
    schema: dict[str, Any] = json.loads((DATA / "wire-schema.json").read_text())
    return schema
