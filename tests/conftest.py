"""Shared test configuration: the ``slow`` marker runs only with ``--runslow`` (CI passes it); the
``load_benchmark`` fixture."""

import importlib.util
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def load_benchmark():
    """``load_benchmark(name)``: ``benchmarks/<name>.py`` imported as a fresh module (the benchmarks are
    scripts, not a package), to call its ``main(argv)``."""

    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"{name}_under_test", BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
