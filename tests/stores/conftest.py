"""Store tests: let pytest explain assertion failures inside the contract suite."""

import pytest

# The contract lives in the package, outside pytest's rewriting of test modules;
# registering it before any test module imports it gives full assertion diffs.
pytest.register_assert_rewrite("chatkit_asgi.testing.store_contract")
