"""Spawned worker processes and unguarded scripts.

noisesim starts its worker processes with the ``spawn`` method (numba's OpenMP threading layer is not
fork-safe): ``generate_dataset(workers > 1)`` and :func:`noisesim.torch_data.make_loader` with
``num_workers > 0``. A spawned process re-imports the main script (as ``__mp_main__``) and so re-runs
everything at its top level that is not under ``if __name__ == "__main__":`` — a second
``generate_dataset`` that finds the output locked, a second loader, and so on. :func:`require_main_guard`
finds such a call in the parent, before any process starts, and says what to do.
"""

from __future__ import annotations

import ast
import inspect
import sys
from pathlib import Path

from .errors import ParameterError

__all__ = ["main_guard_message", "require_main_guard", "unguarded_main_call"]


def main_guard_message(what: str, where: str = "") -> str:
    """The one explanation of the problem, for ``what`` (e.g. ``"generate_dataset(workers > 1)"``).

    Parameters
    ----------
    what : str
        The call that needs the guard.
    where : str
        ``"script:line"`` of the call, when known.

    Returns
    -------
    str
    """
    at = f"{where}: " if where else ""
    return (f"{at}{what} starts worker processes with 'spawn', which re-imports the main script and re-runs "
            "its top level: put the script's work under `if __name__ == \"__main__\":` (or use no worker processes)")


def _is_main_test(test: ast.expr) -> bool:
    """``__name__ == "__main__"`` (either way round)."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = (test.left, test.comparators[0])
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    consts = [s for s in sides if isinstance(s, ast.Constant) and s.value == "__main__"]
    return len(names) == 1 and len(consts) == 1


def unguarded_main_call() -> tuple[str, int] | None:
    """(script, line) when the current call comes from the top level of the main script outside
    ``if __name__ == "__main__":`` (directly, or through functions called from there); else None.

    None also when the main module has no source file (interactive sessions, ``python -c``, notebooks):
    spawn does not re-run those.

    Returns
    -------
    (str, int) or None
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not path:
        return None
    spec_name = getattr(getattr(main, "__spec__", None), "name", None) or ""
    if spec_name == "__main__" or spec_name.endswith(".__main__"):
        return None  # ``python -m package``: spawn does not re-run a package's __main__ (multiprocessing.spawn)
    frame = inspect.currentframe()
    while frame is not None:
        if frame.f_globals is main.__dict__ and frame.f_code.co_name == "<module>":
            break
        frame = frame.f_back
    if frame is None:
        return None
    line = frame.f_lineno
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"), path)
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None  # cannot judge: do not refuse
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_main_test(node.test):
            body_end = max(getattr(n, "end_lineno", n.lineno) for n in node.body)
            if node.lineno <= line <= body_end:
                return None
    return str(path), line


def require_main_guard(what: str) -> None:
    """Raise :class:`~noisesim.errors.ParameterError` (naming the script and line) when called from an
    unguarded top level of the main script; see the module docstring.

    Parameters
    ----------
    what : str
        The call that needs the guard, named in the message.
    """
    hit = unguarded_main_call()
    if hit is not None:
        raise ParameterError(main_guard_message(what, f"{hit[0]}, line {hit[1]}"))
