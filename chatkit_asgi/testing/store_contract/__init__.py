"""The behaviour every `Store` must have, as a pytest suite to subclass.

Subclass `StoreContract` in a test module and override the `store` fixture so it
returns a fresh, empty store whose tenant key is `ctx["user"]`::

    from chatkit_asgi.testing.store_contract import StoreContract

    class TestMyStore(StoreContract):
        @pytest.fixture
        async def store(self, tmp_path):
            async with MyStore(tmp_path / "db", tenant=lambda ctx: ctx["user"]) as store:
                yield store

The suite calls the store with contexts like `{"user": "alice"}` and
`{"user": "bob"}` and checks that the two never see each other's threads, items
or attachments. The fixture may be a plain or a yield fixture (to close the store).
For readable assertion failures, call
`pytest.register_assert_rewrite("chatkit_asgi.testing.store_contract")` in a
`conftest.py` before the test module imports the suite.

This module imports pytest (and runs on anyio, which chatkit-asgi depends on), so
it is for test suites only: install the test tools (`pip install chatkit-asgi[dev]`
or just `pytest` and `pytest-asyncio` in auto mode).
"""

from __future__ import annotations

from ._data import ALICE, BOB, every_kind_of_item
from .items import ItemContract
from .others import OtherContract
from .threads import ThreadContract

__all__ = ["ALICE", "BOB", "StoreContract", "every_kind_of_item"]


class StoreContract(ThreadContract, ItemContract, OtherContract):
    """Tests every `Store` must pass; subclass it and override the `store` fixture.

    The fixture must return a new, empty store that isolates tenants by
    `context["user"]` (e.g. `tenant=lambda ctx: ctx["user"]`).
    """
