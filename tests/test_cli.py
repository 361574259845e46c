"""The CLI's wiring: help, info, user errors as one line with a non-zero exit."""
import subprocess
import sys

from click.testing import CliRunner

from imnet.cli import cli


def test_help_lists_commands():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "info" in result.output


def test_info_reports_pil_flavour_and_versions():
    result = CliRunner().invoke(cli, ["info"])
    assert result.exit_code == 0, result.output
    lines = dict(line.split(":", 1) for line in result.output.splitlines())
    assert {"imnet", "torch", "torchvision", "dali", "PIL", "cuda"} <= set(lines)
    assert "Pillow" in lines["PIL"]
    assert "libjpeg-turbo" in lines["PIL"]


def test_python_dash_m_runs():
    out = subprocess.run([sys.executable, "-m", "imnet", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    assert "imnet" in out.stdout
