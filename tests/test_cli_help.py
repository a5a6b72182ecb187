"""The command line explains itself (issue 11 item 6): help for every option, no reST, -v, pipes, option
names in errors."""

from __future__ import annotations

import argparse
import io
import re

import numpy as np
import pytest

from noisesim.cli import build_parser, main

REST = re.compile(r"``|:(func|class|meth|mod|attr|data):`")


def _walk(parser, path=("noisesim",)):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, path + (name,))


def _options(parser):
    """(name, action, help as printed) of each documented option and positional of ``parser``."""
    formatter = parser._get_formatter()
    for a in parser._actions:
        if isinstance(a, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
            continue
        if a.help == argparse.SUPPRESS:
            continue
        yield "/".join(a.option_strings) or a.dest, a, formatter._expand_help(a) if a.help else ""


def _every_option():
    for path, parser in _walk(build_parser()):
        for name, action, text in _options(parser):
            yield " ".join(path[1:] + (name,)), action, text


def test_every_option_of_every_command_has_help_with_its_default():
    missing, no_default, rest = [], [], []
    for path, parser in _walk(build_parser()):
        parser.format_help()  # every help text formats (no stray % in it)
        if REST.search(parser.description or ""):
            rest.append(" ".join(path))
    for name, a, text in _every_option():
        if not text.strip():
            missing.append(name)
            continue
        if REST.search(text):
            rest.append(name)
        if not a.option_strings or a.required or a.nargs == 0:
            continue  # positionals, required options and on/off flags have no default to state
        # an option with a value says what it is; one not given by default says what happens without it,
        # unless it only adds something ("also write …") or a mode needs it ("needed there")
        if "default" not in text.lower() and not (a.default in (None, False) and ("also" in text or "needed" in text)):
            no_default.append(f"{name} (default {a.default!r})")
    assert not missing, f"options without help: {missing}"
    assert not no_default, f"help does not state the default: {no_default}"
    assert not rest, f"raw reST in help or descriptions: {rest}"


# A physical quantity's option names its unit in brackets, as the docs do; these take none (reviewed).
UNIT = re.compile(r"\[(DN/e⁻|DN|e⁻/s|e⁻|s|px|nats|σ|SE)\]")
UNITLESS = {
    # names, paths, specs and lists of words
    "simulate --card", "simulate --input", "simulate --output", "simulate --disable", "simulate --params-out",
    "cards items", "cards --output/-o", "cards --camera", "cards --name",
    "calibrate capture", "calibrate --camera", "calibrate --output/-o", "calibrate --report", "calibrate --dark-bank",
    "calibrate --scheduler",
    "validate card", "validate capture", "validate --bank",
    "generate --card", "generate --source", "generate --output/-o", "generate --scheduler", "generate --bank",
    "inspect dataset", "inspect --contact-sheet", "inspect --card",
    "darks bank darks", "darks bank --card", "darks bank --output/-o",
    # numbers without a unit: seeds, indices, counts, ISO speed (ISO 12232), exposure ratios, fractions
    "simulate --seed", "simulate --frame-index", "simulate --iso", "simulate --ratio",
    "calibrate --seed", "calibrate --workers/-j",
    "validate --seed", "validate --max-frames", "validate --max-ks", "validate --max-std-diff",
    "validate --min-map-correlation",
    "generate --seed", "generate --pairs/-n", "generate --iso", "generate --ratio", "generate --workers/-j",
    "generate --shards",
    "inspect --n",
}


def test_every_quantity_option_names_its_unit():
    seen, no_unit = set(), []
    for name, a, text in _every_option():
        seen.add(name)
        if a.nargs == 0 or a.choices is not None:  # on/off flags and choices of words
            continue
        if not UNIT.search(text) and name not in UNITLESS:
            no_unit.append(name)
    assert not no_unit, f"options with a value but no [unit] (add one, or review them into UNITLESS): {no_unit}"
    assert not UNITLESS - seen, f"UNITLESS names options that do not exist: {UNITLESS - seen}"
    for name, a, text in _every_option():  # a reviewed unitless number says so, in words
        if name in UNITLESS and a.type in (int, float) and not re.search(r"count|no unit|without unit|fraction|"
                                                                         r"index|integer", text):
            no_unit.append(name)
    assert not no_unit, f"unitless numbers whose help does not say what they count or that they have no unit: {no_unit}"


def test_usage_and_help_show_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "mosaic patch side [px]" in text and "(default: 256)" in text and "(default: 100:300)" in text


class _ClosedPipe(io.TextIOBase):
    def write(self, s):
        raise BrokenPipeError(32, "Broken pipe")


def test_no_broken_pipe_traceback(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdout", _ClosedPipe())
    rc = main(["cards"])
    err = capsys.readouterr().err
    assert rc == 141 and "Traceback" not in err and "Broken pipe" not in err


def test_broken_pipe_in_a_real_pipe(tmp_path):
    import os
    import subprocess
    import sys

    # enough output to fill the pipe after `head` has gone: every shipped card, shown many times over
    script = tmp_path / "many.py"
    script.write_text("import sys\nfrom noisesim.cli import main\nsys.exit(main(['cards', 'show', 'SonyA7S2']) if False else "
                      "[main(['cards', 'show', 'SonyA7S2']) for _ in range(40)][-1])\n")
    proc = subprocess.run(f"{sys.executable} {script} | head -n 1", shell=True, capture_output=True, text=True,
                          timeout=120, env={**os.environ})
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr, proc.stderr


def test_verbose_adds_information(tmp_path):
    import os
    import subprocess
    import sys

    src = tmp_path / "clean.npy"
    np.save(src, np.full((32, 32), 0.2, np.float32))
    args = ["simulate", "--card", "SonyA7S2", "--iso", "800", "--input", str(src), "--output", str(tmp_path / "n.npy")]
    run = lambda extra: subprocess.run([sys.executable, "-m", "noisesim", *extra, *args], capture_output=True,  # noqa: E731
                                       text=True, timeout=120, env={**os.environ})
    quiet, loud = run([]), run(["-v"])
    assert quiet.returncode == loud.returncode == 0
    assert "read_sigma_dn" not in quiet.stderr
    assert "read_sigma_dn" in loud.stderr and "read as normalized" in loud.stderr and "maps: none" in loud.stderr


def test_cli_errors_name_cli_options(tmp_path, capsys):
    src = tmp_path / "clean.npy"
    np.save(src, np.full((32, 32), 0.2, np.float32))
    base = ["simulate", "--card", "SonyA7S2", "--input", str(src), "--output", str(tmp_path / "n.npy")]
    for extra, option in ((["--gain-k", "400"], "--gain-k 400"), (["--iso", "12"], "--iso 12"), (["--ratio", "0.5"], "--ratio")):
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        assert option in err and "gain_k_dn_per_e=" not in err and "iso=" not in err, err


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    from noisesim.dataset import generate_dataset

    out = tmp_path_factory.mktemp("ds") / "train.h5"
    generate_dataset(out, card="SonyA7S2", pairs=2, patch=32, progress=False)
    return out


def test_inspect_with_a_card_name(tiny_dataset, capsys):
    assert main(["inspect", str(tiny_dataset), "--card", "SonyA7S2"]) == 0
    out = capsys.readouterr().out
    assert "stored card: the same as SonyA7S2" in out
    assert main(["inspect", str(tiny_dataset), "--card", "NikonD850"]) == 0
    assert "differs from NikonD850" in capsys.readouterr().out
    assert main(["inspect", str(tiny_dataset), "--card"]) == 0
    assert "card text:" in capsys.readouterr().out


@pytest.mark.parametrize("argv,expected", [
    (["cards", "show", "SonyA7S2"], "SonyA7S2.toml; physics, 28 ISO rows"),
    (["cards"], "shipped cards: "),
    (["inspect", "{dataset}"], "MB on disk"),
    (["generate", "--card", "SonyA7S2", "--pairs", "1", "--patch", "16", "--output", "{tmp}/g.h5", "--no-progress"],
     "recorded command: noisesim generate"),
])
def test_verbose_adds_information_on_every_command(tiny_dataset, tmp_path, caplog, capsys, argv, expected):
    argv = [a.format(dataset=tiny_dataset, tmp=tmp_path) for a in argv]
    assert main(argv) == 0
    assert not caplog.records  # nothing below a warning without -v
    (tmp_path / "g.h5").unlink(missing_ok=True)
    assert main(["-v", *argv]) == 0
    assert expected in caplog.text and f"{argv[0]}: done in" in caplog.text, caplog.text
    caplog.clear()
    (tmp_path / "g.h5").unlink(missing_ok=True)
    assert main([*argv, "-v"]) == 0  # -v after the command too
    assert expected in caplog.text, caplog.text
