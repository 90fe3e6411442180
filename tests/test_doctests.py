"""The examples in docstrings are run: a docstring example that no longer holds is a failure."""

import doctest
import importlib
import pkgutil

import pytest

import learnlr

MODULES = sorted(m.name for m in pkgutil.walk_packages(learnlr.__path__, "learnlr."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_hold(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, report=False, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples failed"
