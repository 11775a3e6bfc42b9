"""``conveyor ui`` on the command line."""

from __future__ import annotations

import socket

import pytest


def test_a_taken_port_is_one_line_naming_the_fix(settings: object, capsys: pytest.CaptureFixture[str]) -> None:
    from conveyor.cli.main import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as exit_:
            main(["ui", "--port", str(port)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert f"Cannot listen on 127.0.0.1:{port}" in err and "--port N" in err and len(err.splitlines()) == 1


def test_help_names_the_dashboard(capsys: pytest.CaptureFixture[str]) -> None:
    from conveyor.cli.main import main

    main(["ui", "--help"])
    out = capsys.readouterr().out
    assert "--port" in out and "dashboard" in out
