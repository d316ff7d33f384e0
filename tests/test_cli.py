import subprocess
import sys

import pytest

from auxtrain.cli import main


@pytest.mark.parametrize("argv", [["--help"], ["fit", "--help"], ["eval", "--help"], ["make-c", "--help"]])
def test_help_exits_zero(argv, capsys):
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "usage: auxtrain" in out


def test_every_subcommand_help_has_an_example(capsys):
    for command in ["fit", "eval", "make-c"]:
        assert main([command, "--help"]) == 0
        assert f"auxtrain {command}" in capsys.readouterr().out.split("example:")[1]


def test_python_dash_m_runs_the_cli():
    result = subprocess.run([sys.executable, "-m", "auxtrain", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "fit" in result.stdout and "eval" in result.stdout


def test_unknown_subcommand_is_a_usage_error():
    assert main(["nonsense"]) == 2
