"""The shared store contract, on MongoStore with both drivers and both delete modes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from chatkit_asgi.stores.mongodb import MongoStore
from chatkit_asgi.testing.store_contract import StoreContract


class TestMongoStore(StoreContract):
    """The contract through PyMongo async and motor, transactions detected (used here)."""

    @pytest.fixture
    def store(self, make_store: Callable[..., MongoStore[Any]]) -> MongoStore[Any]:
        return make_store()


class TestMongoStoreWithoutTransactions(StoreContract):
    """The contract with the ordered, non-transactional deletes of standalone servers."""

    @pytest.fixture
    def store(self, make_store: Callable[..., MongoStore[Any]]) -> MongoStore[Any]:
        return make_store(transactions=False)
