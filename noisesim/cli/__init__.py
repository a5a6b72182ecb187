"""The ``noisesim`` console script: a thin shell over the Python API.

Each subcommand lives in a module of this package exposing ``add_parser(subparsers)`` and
``run(args) -> int``. Errors a user can cause (:class:`noisesim.errors.NoiseSimError`, missing files)
become one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import signal
import sys

__all__ = ["COMMANDS", "build_parser", "main", "seed_arg"]

# Subcommand modules, in the order ``noisesim --help`` lists them. A module that fails to import
# (an optional part not present) is skipped, not fatal.
COMMANDS = ("simulate", "cards", "calibrate", "validate", "generate", "inspect", "darks")


def seed_arg(text: str) -> int:
    """argparse ``type`` of every ``--seed``: an integer in 0 .. 2**64 - 1 (a usage error otherwise)."""
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


def build_parser() -> argparse.ArgumentParser:
    """The ``noisesim`` argument parser with one sub-command per module of :mod:`noisesim.cli`."""
    from .. import __version__

    parser = argparse.ArgumentParser(
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
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 a failed check, 2 bad input)."""
    from ..errors import NoiseSimError

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="noisesim: %(message)s")
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    previous = _terminate_like_ctrl_c()
    try:
        return int(args.run(args) or 0)
    except NoiseSimError as exc:
        print(f"noisesim {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader went away (``noisesim … | head``): stop quietly, as other command-line tools do
        _silence_stdout()
        return 141
    except OSError as exc:  # missing file, read-only folder, disk full, file-size limit (EFBIG), ...
        print(f"noisesim {args.command}: error: {os_error_text(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        term = isinstance(exc, Terminated)
        print(f"noisesim {args.command}: {'terminated (SIGTERM)' if term else 'interrupted'}", file=sys.stderr)
        return 128 + signal.SIGTERM if term else 130
    finally:
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
