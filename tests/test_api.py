"""The public API: every module states its names in ``__all__``, star imports leak nothing, and every public
function, class and method has a docstring (issue 10 item 5)."""

import importlib
import inspect
import pkgutil

import pytest

import noisesim
import noisesim.calibration

MODULES = sorted(
    m.name
    for pkg in (noisesim, noisesim.calibration)
    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".")
    if not m.name.endswith("__main__") and not m.name.startswith("noisesim.calibration.calibration")
)


def _import(name):
    try:
        return importlib.import_module(name)
    except ImportError as exc:  # optional extras (torch, dask)
        pytest.skip(f"{name}: {exc}")


@pytest.mark.parametrize("name", MODULES + ["noisesim"])
def test_module_has_all_and_star_import_gives_exactly_it(name):
    mod = _import(name)
    assert hasattr(mod, "__all__"), f"{name} has no __all__"
    missing = [n for n in mod.__all__ if not hasattr(mod, n) and n not in getattr(mod, "_LAZY", {})]
    assert not missing, f"{name}.__all__ names what it does not define: {missing}"
    ns: dict = {}
    exec(f"from {name} import *", ns)  # noqa: S102
    leaked = sorted(set(ns) - set(mod.__all__) - {"__builtins__"})
    assert not leaked, leaked


def test_no_annotations_leak():
    assert not hasattr(noisesim, "annotations")  # was leaked by `from .errors import *`


def _undocumented(name):
    mod = _import(name)
    out = []
    for attr, obj in vars(mod).items():
        if attr.startswith("_") or getattr(obj, "__module__", None) != name or not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        if not (obj.__doc__ or "").strip():
            out.append(f"{name}.{attr}")
        if inspect.isclass(obj):
            for m, f in vars(obj).items():
                if m.startswith("_") or not (inspect.isfunction(f) or isinstance(f, (property, classmethod, staticmethod))):
                    continue
                fn = f.fget if isinstance(f, property) else getattr(f, "__func__", f)
                if not (fn.__doc__ or "").strip():
                    out.append(f"{name}.{attr}.{m}")
    return out


def test_every_public_definition_has_a_docstring():
    missing = [d for name in MODULES for d in _undocumented_or_skip(name)]
    assert not missing, f"{len(missing)} public definitions without a docstring: {missing}"


def _undocumented_or_skip(name):
    try:
        importlib.import_module(name)
    except ImportError:
        return []
    return _undocumented(name)


def test_architecture_names_functions_that_exist():
    """docs/ARCHITECTURE.md's module table names only definitions its modules have (it once listed
    ``noise_kernel_*`` for ``fused_noise_*``)."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "ARCHITECTURE.md").read_text()
    checked, missing = 0, []
    for paths, api in re.findall(r"^\| ((?:`noisesim/(?:\w+/)*\w+\.py`(?:, )?)+) \|[^|]*\| (.*) \|$", text, re.M):
        mods, unavailable = [], False
        for path in re.findall(r"`(noisesim/(?:\w+/)*\w+)\.py`", paths):
            try:
                mods.append(importlib.import_module(path.replace("/", ".")))
            except ImportError:  # an optional extra (torch) is not installed: its names cannot be checked
                unavailable = True
        if not mods or unavailable:
            continue
        while re.search(r"\([^()]*\)", api):  # drop argument lists, nested ones too
            api = re.sub(r"\([^()]*\)", "", api)
        for name in re.findall(r"`\.?([A-Za-z_]\w*)", api):
            if name in ("noise",):  # `noise.simulate`
                continue
            checked += 1
            found = any(hasattr(m, name) or any(hasattr(v, name) for v in vars(m).values() if inspect.isclass(v)) for m in mods)
            if not found:
                missing.append(f"{paths}: {name}")
    assert checked > 40 and not missing, missing


ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = ("noisesim", "calibration", "data_cards")
SCANNED = ("noisesim", "calibration", "data_cards", "benchmarks", "examples")


def _private(name):
    return name.startswith("_") and not name.startswith("__")


def private_imports(path, text=None):
    """``from X import _name`` and ``module._name`` in one source file, where X / module is this project's
    (relative imports, ``noisesim.*``, ``calibration.*``, ``data_cards.*``): one module reaching into another's
    internals (a class imported from another module counts too: ``Card._x``). Standard-library and
    third-party privates (``os._exit``) are not this test's business; tests may reach into internals."""
    import ast

    tree = ast.parse(text if text is not None else path.read_text(), str(path))
    own = lambda mod, level: level > 0 or (mod or "").split(".")[0] in PROJECT_PACKAGES  # noqa: E731
    modules, found = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and own(node.module, node.level):
            for a in node.names:
                if _private(a.name):
                    found.append(f"{path}:{node.lineno}: from {'.' * node.level}{node.module or ''} import {a.name}")
                else:  # may be a module (`from . import card`): its private attributes are checked below
                    modules.add(a.asname or a.name)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if own(a.name, 0):
                    modules.add(a.asname or a.name.split(".")[0])
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            base = node.value
            while isinstance(base, ast.Attribute):
                if _private(base.attr):
                    break
                base = base.value
            if isinstance(base, ast.Name) and base.id in modules:
                found.append(f"{path}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_private_import_scan_catches_both_forms(tmp_path):
    p = tmp_path / "m.py"
    src = ("import os\nfrom . import card\nfrom .card import _is_number, Card\nimport noisesim.estimators as est\n"
           "os._exit(0)\ncard._is_number(1)\nest._filliben_medians(3)\nCard._private_method\nfrom __future__ import annotations\n")
    found = private_imports(p, src)
    expected = ("import _is_number", "card._is_number", "est._filliben_medians", "Card._private_method")
    assert len(found) == 4 and all(s in "\n".join(found) for s in expected), found


def test_no_module_imports_another_modules_private_names():
    """Before: sampling imported card._is_number and calibration.report estimators._filliben_medians."""
    found = [hit for pkg in SCANNED for path in sorted((ROOT / pkg).rglob("*.py")) for hit in private_imports(path)]
    assert not found, "\n".join(found)


_ORDER = ("Parameters", "Attributes", "Returns", "Yields")


def _sections(doc):
    import re

    return {m for m in _ORDER if re.search(rf"^{m}\n-+$", doc, re.M)}


def _own_params(fn, skip_first):
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return []
    ps = [p for p in sig.parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return ps[1:] if skip_first and ps and ps[0].name in ("self", "cls") else ps


def _returns_value(fn):
    """Whether the function's own body returns something other than None, or yields (ast of its source)."""
    import ast
    import textwrap

    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        return False
    f = tree.body[0]
    if not isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) or (f.returns is not None and ast.unparse(f.returns) in ("None", "'None'")):
        return False
    nested = {id(n) for g in ast.walk(f) if g is not f and isinstance(g, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
              for n in ast.walk(g)}
    return any(id(n) not in nested and (isinstance(n, (ast.Yield, ast.YieldFrom)) or (
        isinstance(n, ast.Return) and n.value is not None and not (isinstance(n.value, ast.Constant) and n.value.value is None)))
        for n in ast.walk(f))


def missing_sections(name):
    """``module.name: Parameters/Returns`` for each public callable of ``__all__`` whose numpydoc docstring
    lacks the section its signature calls for (a class: Parameters or Attributes for its fields)."""
    import dataclasses

    mod = _import(name)
    out = []
    for attr in getattr(mod, "__all__", ()):
        obj = getattr(mod, attr, None)
        if getattr(obj, "__module__", None) != name:
            continue
        items = []
        if inspect.isfunction(obj):
            items.append((attr, obj, False))
        elif inspect.isclass(obj) and not issubclass(obj, BaseException):
            items.append((attr, obj, None))
            items += [(f"{attr}.{m}", getattr(f, "__func__", f), True) for m, f in vars(obj).items()
                      if not m.startswith("_") and inspect.isfunction(getattr(f, "__func__", f))]
        for q, fn, method in items:
            have = _sections(inspect.getdoc(fn) or "")
            if method is None:  # a class: its constructor's parameters or its fields
                init = "__init__" in vars(fn) or dataclasses.is_dataclass(fn)
                if init and _own_params(fn.__init__, True) and not have & {"Parameters", "Attributes"}:
                    out.append(f"{name}.{q}: Parameters or Attributes")
                continue
            if _own_params(fn, method) and "Parameters" not in have:
                out.append(f"{name}.{q}: Parameters")
            if _returns_value(fn) and not have & {"Returns", "Yields"}:
                out.append(f"{name}.{q}: Returns")
    return out


@pytest.mark.parametrize("name", MODULES)
def test_public_callables_have_parameters_and_returns_sections(name):
    """Before: 55 public definitions had no docstring and many more a one-liner with no units or shapes."""
    missing = missing_sections(name)
    assert not missing, missing


def test_section_check_catches_one_liners():
    def f(x, y=1):
        """One line."""
        return x

    def g():
        """Parameters
        ----------
        """

    assert not _sections(inspect.getdoc(f)) and _own_params(f, False) and _returns_value(f) and not _returns_value(g)
