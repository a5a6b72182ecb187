"""The examples in docstrings run and print what they show (issue 10: the docs' claims are tested)."""

import doctest
import importlib
import pkgutil

import pytest

import noisesim
import noisesim.calibration

MODULES = sorted(
    m.name
    for pkg in (noisesim, noisesim.calibration)
    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".")
    if ".cli" not in m.name and not m.name.endswith("__main__") and not m.name.startswith("noisesim.calibration.calibration")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    if name.startswith("noisesim.torch") or name == "noisesim.distributed":
        pytest.importorskip("torch" if name.startswith("noisesim.torch") else "dask")
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples of {name} fail (see output)"
