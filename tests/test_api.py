"""The public API: every module states its names in ``__all__``, star imports leak nothing, and every public
function, class and method has a docstring (issue 10 item 5)."""

import importlib
import importlib.util
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


def _doc_modules(path):
    """The modules a path of docs/ARCHITECTURE.md's table stands for: ``noisesim/dataset/layout.py`` one,
    a package folder (``noisesim/importers/``, ``calibration/``) the package and every module in it.
    None when one cannot be imported (an optional extra such as torch is not installed)."""
    name = path.removesuffix(".py").rstrip("/").replace("/", ".")
    name = "noisesim.calibration" if name == "calibration" else name
    try:
        mod = importlib.import_module(name)
        if path.endswith("/"):
            return [mod] + [importlib.import_module(m.name) for m in pkgutil.walk_packages(mod.__path__, name + ".")]
        return [mod]
    except ImportError:
        return None


def _doc_names(span):
    """The names a backticked span of the table refers to: each comma-separated item's leading identifier
    (argument lists dropped; ``from X import a, b`` gives a and b; ``.pack`` a method)."""
    import re

    while re.search(r"\([^()]*\)", span):  # drop argument lists, nested ones too
        span = re.sub(r"\([^()]*\)", "", span)
    span = span.split(" import ", 1)[1] if span.startswith("from ") else span
    return [m.group(1) for part in span.split(",") if (m := re.match(r"\s*\.?([A-Za-z_][\w.]*)(?!\w|=)", part))]


def _defined(name, mods):
    """Whether ``name`` (``f``, ``Class.method``, a method or dataclass field of a class, or ``module.f`` of
    another noisesim module) is defined."""
    import dataclasses

    head, *rest = name.split(".")
    if rest and importlib.util.find_spec(f"noisesim.{head}") is not None:
        mods, (head, *rest) = [importlib.import_module(f"noisesim.{head}")], rest
    for m in mods:
        obj = getattr(m, head, None)
        if obj is None:
            obj = next((getattr(v, head, True) for v in vars(m).values() if inspect.isclass(v) and (
                hasattr(v, head) or (dataclasses.is_dataclass(v) and head in {f.name for f in dataclasses.fields(v)}))), None)
        for part in rest:
            obj = getattr(obj, part, None)
        if obj is not None:
            return True
    return False


def test_architecture_names_functions_that_exist():
    """docs/ARCHITECTURE.md names only definitions its modules have (it once listed ``noise_kernel_*`` for
    ``fused_noise_*``): every name of the table's API column (all rows: single modules, the dataset
    modules, the importers, cli and calibration packages), the modules a package row's concept column lists,
    and every dotted ``module.name`` of noisesim in the prose."""
    from pathlib import Path

    checked, missing = _architecture_missing((Path(__file__).resolve().parents[1] / "docs" / "ARCHITECTURE.md").read_text())
    assert checked > 80 and not missing, missing


def test_architecture_check_catches_wrong_names():
    rows = ("| `noisesim/kernels.py` | kernel | `fused_noise_numba`, `noise_kernel_numba` (use `noise.simulate`) |\n"
            "| `noisesim/dataset/layout.py` | format | `sample_crc32`, `no_such_crc` |\n"
            "| `calibration/` | `capture`, `no_such_module` | `calibrate(capture, camera=...) -> CalibrationResult` |\n"
            "Levels broadcast with `cfa.per_site_values`, not `cfa.per_site_value`.\n")
    checked, missing = _architecture_missing(rows)
    assert checked >= 9 and sorted(m.split(": ")[1] for m in missing) == [
        "cfa.per_site_value", "no_such_crc", "no_such_module", "noise_kernel_numba"], missing


def _architecture_missing(text):
    import re

    checked, missing = 0, []
    for paths, concept, api in re.findall(r"^\| ((?:`(?:noisesim|calibration)[\w/.]*`(?:, )?)+) \|([^|]*)\| (.*) \|$", text, re.M):
        found = [_doc_modules(p) for p in re.findall(r"`([\w/.]+)`", paths)]
        if any(f is None for f in found):
            continue
        mods = [m for f in found for m in f]
        spans = re.findall(r"`([^`]+)`", api)
        if all(p.endswith("/") for p in re.findall(r"`([\w/.]+)`", paths)) and len(mods) > 1:
            spans += [s for s in re.findall(r"`([^`]+)`", concept) if re.fullmatch(r"[a-z_]+(\(.*\))?", s) and s != "noisesim"]
        for span in spans:
            for name in _doc_names(span):
                checked += 1
                if not (_defined(name, mods) or any(m.__name__.endswith("." + name) for m in mods)):
                    missing.append(f"{paths}: {name}")
    for dotted in re.findall(r"`((?:noisesim\.)?(?:cfa|card|params|noise|rawio|dng|isp|blur|sources|darkbank|sampling)\.\w+)", text):
        mod, _, attr = dotted.removeprefix("noisesim.").rpartition(".")
        checked += 1
        if not hasattr(importlib.import_module(f"noisesim.{mod}"), attr):
            missing.append(f"prose: {dotted}")
    return checked, missing


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
