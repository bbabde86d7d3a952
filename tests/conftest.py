"""Fixtures shared by the whole suite.

`mongo_uri` starts the local MongoDB-compatible test server once per session (or
uses `CHATKIT_TEST_MONGODB_URI`); a missing server fails the tests that need it.
`postgres_url` likewise starts a throwaway PostgreSQL cluster (or uses
`CHATKIT_TEST_POSTGRES_URL`); see tests/_postgres_server.py.

Property-based tests run a fixed, reproducible set of examples by default
(`HYPOTHESIS_PROFILE=ci`); `HYPOTHESIS_PROFILE=explore` draws new examples each run.
"""

import os

import pytest
from hypothesis import settings

# The store contract suite lives in the package, outside pytest's rewriting of test
# modules; registering it here, before any test module imports it, gives full
# assertion diffs wherever it runs (tests/stores, tests/mongodb, docs samples).
pytest.register_assert_rewrite("chatkit_asgi.testing.store_contract")

settings.register_profile("ci", derandomize=True, database=None)
settings.register_profile("explore")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

from tests._mongo_server import mongo_uri  # noqa: E402, F401
from tests._postgres_server import postgres_url  # noqa: E402, F401
