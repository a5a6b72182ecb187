"""The command line's log lines: noisesim's own, and other libraries' only from WARNING up."""

import io
import logging

from noisesim.cli import _cli_log_handler


def _emit(name, level, message):
    handler = _cli_log_handler()
    handler.stream = io.StringIO()
    record = logging.getLogger(name).makeRecord(name, level, __file__, 1, message, (), None)
    handler.handle(record)
    return handler.stream.getvalue()


def test_other_libraries_info_lines_are_not_shown():
    # Dask distributed logs every worker event at INFO on its own loggers ("Start Nanny at: …"); a
    # `generate --scheduler local` run printed two dozen of them with the "noisesim:" prefix.
    assert _emit("distributed.nanny", logging.INFO, "Start Nanny at: 'tcp://127.0.0.1:1'") == ""
    assert _emit("distributed.scheduler", logging.WARNING, "port in use") == "noisesim: distributed: port in use\n"


def test_noisesim_lines_are_shown_at_info():
    assert _emit("noisesim.dataset", logging.INFO, "2 shard tasks") == "noisesim: 2 shard tasks\n"
