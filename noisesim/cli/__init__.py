"""The ``noisesim`` console script: a thin shell over the Python API.

Each subcommand lives in a module of this package exposing ``add_parser(subparsers)`` and
``run(args) -> int``. Errors a user can cause (:class:`noisesim.errors.NoiseSimError`, missing files)
become one line on stderr and exit status 2, never a traceback; so do usage errors (one line that points
to ``--help``, not argparse's usage block). A command states, with ``set_defaults(api_options=...)``, which
option sets each API parameter, so an API message (``gain_k_dn_per_e=40 is outside …``) reaches the user
in the command line's words (``--gain-k 40 is outside …``; :func:`cli_message`).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Mapping

__all__ = ["COMMANDS", "HelpFormatter", "describe_card", "Parser", "build_parser", "cli_message", "main", "seed_arg", "usage_error"]

log = logging.getLogger("noisesim.cli")

# Subcommand modules, in the order ``noisesim --help`` lists them. A module that fails to import
# (an optional part not present) is skipped, not fatal.
COMMANDS = ("simulate", "cards", "calibrate", "validate", "generate", "inspect", "darks")


def seed_arg(text: str) -> int:
    """argparse ``type`` of every ``--seed``: an integer in 0 .. 2**64 - 1 (a usage error otherwise).

    Parameters
    ----------
    text : str
        The option's value.

    Returns
    -------
    int
    """
    from ..dataset import check_seed
    from ..errors import ParameterError

    try:
        return check_seed(int(text, 0))
    except (ValueError, ParameterError) as exc:
        msg = str(exc) if isinstance(exc, ParameterError) else f"must be an integer in 0..2**64-1, got {text!r}"
        raise argparse.ArgumentTypeError(msg.replace("seed must", "must")) from None


def os_error_text(exc: OSError) -> str:
    """One line for an OSError: ``reason: file`` (h5py's multi-line messages cut to their first line)."""
    reason = exc.strerror or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if exc.errno == errno.EFBIG:
        reason += " (the file-size limit, ulimit -f, was reached)"
    elif exc.errno in (errno.ENOSPC, errno.EDQUOT):
        reason += " (free some space and run again)"
    return f"{reason}: {exc.filename}" if exc.filename else reason


def describe_card(card) -> str:
    """One line about a loaded card, for ``-v``: name, file, kind, ISO rows or K range, maps.

    Parameters
    ----------
    card : Card

    Returns
    -------
    str
    """
    rows = f"{len(card.iso_table)} ISO rows" if card.iso_table else "no ISO table"
    lo, hi = card.k_range_dn_per_e
    maps = f"maps {card.maps_file}" if card.maps_file else "no maps"
    source = card.source_path or "(not from a file)"
    return f"card {card.name}: {source}; {card.kind}, {rows}, K {lo:.4g}–{hi:.4g} DN/e⁻, {maps}"


def usage_error(prog: str, message: str) -> int:
    """Print a usage error as one line, ``PROG: error: MESSAGE (see PROG --help)``; returns exit status 2.

    Parameters
    ----------
    prog : str
        The (sub-)command, e.g. ``"noisesim darks bank"``.
    message : str
        What is wrong.

    Returns
    -------
    int
        2.
    """
    print(f"{prog}: error: {message} (see {prog} --help)", file=sys.stderr)
    return 2


class HelpFormatter(argparse.HelpFormatter):
    """argparse help that states each option's default, ``(default: X)``, unless its text already does.

    Options that are off (``store_true``) or not given by default (``None``) are left alone: their help
    says what happens without them.
    """

    def _get_help_string(self, action):
        text = action.help or ""
        d = action.default
        unset = d is None or isinstance(d, bool) or d == "" or d is argparse.SUPPRESS
        if unset or "default" in text.lower() or not (action.option_strings or action.nargs in ("?", "*")):
            return text
        return text + " (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """The parser of ``noisesim`` and of each sub-command: help with defaults (:class:`HelpFormatter`) and
    usage errors as one line (:func:`usage_error`), named after the innermost sub-command."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        """argparse's hook for a usage error: one line (:func:`usage_error`) and exit status 2.

        Parameters
        ----------
        message : str
            argparse's description of the problem.
        """
        sys.exit(usage_error(self.prog, message))

    def parse_known_args(self, args=None, namespace=None):
        """As argparse's; also records in ``cli_prog`` the innermost sub-command (``noisesim darks bank``).

        Parameters
        ----------
        args : list of str, optional
            Default ``sys.argv[1:]``.
        namespace : argparse.Namespace, optional

        Returns
        -------
        (argparse.Namespace, list of str)
            The options and the arguments not recognized.
        """
        ns, extras = super().parse_known_args(args, namespace)
        if not hasattr(ns, "cli_prog"):  # the innermost sub-command returns first: it names the command
            ns.cli_prog = self.prog
        return ns, extras

    def parse_args(self, args=None, namespace=None):
        """As argparse's; unrecognized arguments are reported under the sub-command they followed.

        Parameters
        ----------
        args : list of str, optional
            Default ``sys.argv[1:]``.
        namespace : argparse.Namespace, optional

        Returns
        -------
        argparse.Namespace
        """
        ns, extras = self.parse_known_args(args, namespace)
        if extras:  # argparse would report these under the top-level ``noisesim``, not the sub-command
            sys.exit(usage_error(ns.cli_prog, f"unrecognized arguments: {' '.join(extras)}"))
        return ns


def cli_message(message: str, options: Mapping[str, str]) -> str:
    """An API error message in the command line's words.

    Parameters
    ----------
    message : str
        The API's message, e.g. ``"gain_k_dn_per_e=40 is outside …"`` or ``"pairs must be >= 1, got 0"``.
    options : mapping of str to str
        API parameter name → option flag, e.g. ``{"gain_k_dn_per_e": "--gain-k", "pairs": "--pairs"}``.
        ``name=value`` (quotes dropped) becomes ``--flag value``; a name with an underscore or a space
        is replaced wherever it stands, a plain word only as the subject of ``… must`` or of a comparison
        (``workers >= 1``), so that ordinary words ("the noise of …") stay as they are.

    Returns
    -------
    str
        ``"--gain-k 40 is outside …"``, ``"--pairs must be >= 1, got 0"``.
    """
    for name, flag in options.items():
        word = rf"(?<![\w./-]){re.escape(name)}"
        message = re.sub(rf"{word}='([^'\s]*)'", lambda m: f"{flag} {m.group(1)}", message)
        message = re.sub(rf"{word}=", f"{flag} ", message)
        message = re.sub(rf"{word}\b" if "_" in name or " " in name else rf"{word}(?= must\b| [<>]=| [≤≥])", flag, message)
    return message


def _add_verbose(parser: argparse.ArgumentParser) -> None:
    """``-v`` also after the command (``noisesim generate … -v``), on every sub-command; SUPPRESS as the
    default keeps a global ``noisesim -v`` intact."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _add_verbose(sub)
            return
    if "-v" not in parser._option_string_actions:
        parser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                            help="log progress details to stderr (same as noisesim -v COMMAND …)")


def build_parser() -> argparse.ArgumentParser:
    """The ``noisesim`` argument parser with one sub-command per module of :mod:`noisesim.cli`.

    Returns
    -------
    argparse.ArgumentParser
    """
    from .. import __version__

    parser = Parser(
        prog="noisesim",
        description="Physics-based camera RAW noise simulation, calibration and paired-data synthesis.",
    )
    parser.add_argument("--version", action="version", version=f"noisesim {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.endswith(f"cli.{name}"):
                continue
            raise
        module.add_parser(sub)
    _add_verbose(parser)
    return parser


class _CliLogFormatter(logging.Formatter):
    """``noisesim: message``; another library's record also names that library (``noisesim: distributed: …``)."""

    def format(self, record: logging.LogRecord) -> str:
        top = record.name.split(".")[0]
        origin = "" if top == "noisesim" else f"{top}: "
        return f"noisesim: {origin}{record.getMessage()}"


def _cli_log_handler() -> logging.Handler:
    # Libraries that configure their own loggers at INFO (Dask distributed: "Start Nanny at …", one line per
    # worker event) would otherwise fill stderr through the root handler: theirs shows from WARNING up.
    handler = logging.StreamHandler()
    handler.setFormatter(_CliLogFormatter())
    handler.addFilter(lambda record: record.name.split(".")[0] == "noisesim" or record.levelno >= logging.WARNING)
    return handler


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 a failed check, 2 bad input).

    Parameters
    ----------
    argv : list of str, optional
        Arguments after the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        Exit status.
    """
    from ..errors import NoiseSimError

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, handlers=[_cli_log_handler()])
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    package_log = logging.getLogger("noisesim")
    level = package_log.level
    if args.verbose:  # also when logging was configured before (an embedding program, a test)
        package_log.setLevel(logging.INFO)
    previous = _terminate_like_ctrl_c()
    start = time.perf_counter()
    try:
        status = int(args.run(args) or 0)
        log.info("%s: done in %.2f s (exit status %d)", args.cli_prog.removeprefix("noisesim "),
                 time.perf_counter() - start, status)
        return status
    except NoiseSimError as exc:
        message = cli_message(str(exc), getattr(args, "api_options", {}))
        # one line: a message that lists problems one per line reads "first: second; third"
        lines = [line.strip() for line in message.splitlines() if line.strip()]
        print(f"{args.cli_prog}: error: {lines[0] if lines else type(exc).__name__}"
              + (": " + "; ".join(lines[1:]) if len(lines) > 1 else ""), file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader went away (``noisesim … | head``): stop quietly, as other command-line tools do
        _silence_stdout()
        return 141
    except OSError as exc:  # missing file, read-only folder, disk full, file-size limit (EFBIG), ...
        print(f"{args.cli_prog}: error: {os_error_text(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        term = isinstance(exc, Terminated)
        print(f"{args.cli_prog}: {'terminated (SIGTERM)' if term else 'interrupted'}", file=sys.stderr)
        return 128 + signal.SIGTERM if term else 130
    finally:
        package_log.setLevel(level)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush does not fail on the closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is not a real file (tests, embedding)
        pass


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so every command cleans up the same way (partial files kept, workers
    shut down, temporary files removed)."""


def _terminate_like_ctrl_c():
    """Install the SIGTERM handler (main thread only); returns the previous handler, or None."""
    def handler(signum, frame):
        raise Terminated

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. main() called from a thread): leave it alone
        return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
