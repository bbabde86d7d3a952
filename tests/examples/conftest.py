"""Fixtures of the example tests: the session's MongoDB (root conftest) and S3 servers."""

from tests._s3_server import s3_bucket, s3_endpoint  # noqa: F401  (fixtures)
