"""dev.py's set-up: pip stays quiet unless it fails (README quick start).

``quiet_call`` runs a real child process (this interpreter) with its output captured:
nothing is printed when it succeeds, every line is printed when it fails.
"""

import subprocess
import sys

import pytest

import dev

NOISY = "import sys; print('WARNING: Location ignored'); print('Collecting ttkbootstrap'); sys.exit({})"


def test_a_successful_install_prints_nothing(capfd):
    dev.quiet_call([sys.executable, "-c", NOISY.format(0)])
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_a_failed_install_prints_what_it_wrote_and_raises(capfd):
    with pytest.raises(subprocess.CalledProcessError) as failed:
        dev.quiet_call([sys.executable, "-c", NOISY.format(3)])
    assert failed.value.returncode == 3
    out, _ = capfd.readouterr()
    assert "WARNING: Location ignored" in out and "Collecting ttkbootstrap" in out

