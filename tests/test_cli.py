import re
import subprocess
import sys

import pytest

from auxtrain.cli import main


@pytest.mark.parametrize("argv", [["--help"], ["fit", "--help"], ["eval", "--help"], ["make-c", "--help"],
                                  ["list-models", "--help"], ["list-corruptions", "--help"]])
def test_help_exits_zero(argv, capsys):
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "usage: auxtrain" in out


@pytest.mark.parametrize("command", ["fit", "eval", "make-c", "list-models", "list-corruptions"])
def test_every_subcommand_help_has_an_example(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^examples?:", out, re.MULTILINE), out
    assert f"auxtrain {command}" in re.split(r"^examples?:", out, flags=re.MULTILINE)[1]


def test_python_dash_m_runs_the_cli():
    result = subprocess.run([sys.executable, "-m", "auxtrain", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "fit" in result.stdout and "eval" in result.stdout


def test_unknown_subcommand_is_a_usage_error():
    assert main(["nonsense"]) == 2
