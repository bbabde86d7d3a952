"""Every public name openai-chatkit 1.6.5 defines can be imported from our module of the same role.

Code written for openai-chatkit moves to us by changing `chatkit.X` to the module
mapped below; a name it defines that we lack would be an ImportError after the move.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import typing
import warnings

import pytest

from tests.reference_suite.chatkit_modules import MODULES


def _defined_names(module_name: str) -> list[str]:
    """The public names a module defines at top level (not imports, not type variables)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = importlib.import_module(module_name)
    names: list[str] = []
    for node in ast.parse(inspect.getsource(module)).body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [target.id for target in node.targets if isinstance(target, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return [
        name
        for name in names
        if not name.startswith("_") and not isinstance(getattr(module, name), typing.TypeVar)
    ]


@pytest.mark.parametrize(
    ("reference", "ours"), sorted(MODULES.items())[1:]
)  # not the package itself
def test_every_public_name_of_the_reference_module_is_importable_from_ours(
    reference: str, ours: str
) -> None:
    names = _defined_names(reference)
    assert names, f"found no public names in {reference}"
    module = importlib.import_module(ours)
    missing = [name for name in names if not hasattr(module, name)]
    assert not missing, f"{ours} lacks {missing} (defined by {reference})"
