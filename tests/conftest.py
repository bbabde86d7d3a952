"""Fixtures shared by the whole suite.

`mongo_uri` starts the local MongoDB-compatible test server once per session (or
uses `CHATKIT_TEST_MONGODB_URI`); a missing server fails the tests that need it.
"""

from tests._mongo_server import mongo_uri  # noqa: F401
