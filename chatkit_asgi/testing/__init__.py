"""Testing helpers: a typed client for ChatKit apps and the store contract suite."""
