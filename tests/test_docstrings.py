"""Every Examples section in the package runs and prints what it says."""

import doctest
import importlib
import pkgutil

import pytest

import sklearn_hypothesaes

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(
        sklearn_hypothesaes.__path__, prefix="sklearn_hypothesaes."
    )
    if not info.name.endswith("__main__")
)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", MODULES)
def test_examples_in_docstrings(name):
    module = importlib.import_module(name)
    result = doctest.testmod(
        module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    )
    assert result.failed == 0, f"{result.failed} docstring example(s) failed"
