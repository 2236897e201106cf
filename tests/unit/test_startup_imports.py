"""What the GUI route imports before the login window is drawn (issue 14: the one-file
exe's login ≤ 0.8 s): ``main`` with its command line parsed and ``kd.views.start`` — the
start screens — import none of the services, the stores, the signed formats, the command
modules, or the adapters' libraries; the App imports them in its worker once the login
screen is laid out (kd/views/start.py). Without a command main.py parses the global
options alone, as the whole parser would."""

import json
import os
import subprocess
import sys

import pytest

import main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: imported by the services (kd.app, kd.site), never before the login is drawn
LATER = ("nacl", "requests", "urllib3", "serial", "tinydb", "pystray", "kd.app", "kd.site", "kd.core.accounts",
         "kd.core.services", "kd.formats.documents", "kd.formats.signing", "kd.store.database", "kd.lan",
         "kd.lock", "kd.platform", "kd.cli.audit", "kd.cli.exam", "kd.cli.system")

PROBE = ("import json, sys, main, kd.views.start; main.parse_args(['--data-dir', 'x']); "
         "print(json.dumps(sorted(sys.modules)))")

#: command lines without a command (the window, --headless)
GLOBAL_ONLY = ([], ["--headless"], ["--head"], ["-v", "--data-dir", "x", "--lan-port", "0", "--lan-host", "127.0.0.1",
                                                "--lock", "socket://127.0.0.1:9"], ["--lan-port=7"])


def test_the_start_screens_import_none_of_the_services():
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         check=True).stdout
    loaded = json.loads(out.strip().splitlines()[-1])
    early = [m for m in loaded if any(m == name or m.startswith(name + ".") for name in LATER)]
    assert early == []


@pytest.mark.parametrize("args", GLOBAL_ONLY)
def test_without_a_command_the_global_options_parse_as_the_whole_parser(args):
    assert vars(main.parse_args(args)) == vars(main.build_parser().parse_args(args))


def test_a_command_or_an_error_goes_to_the_whole_parser(capsys):
    assert main.parse_args(["--data-dir", "x", "status"]).command == "status"
    for bad in (["--lan-port", "abc"], ["--bogus"]):
        with pytest.raises(SystemExit) as refused:
            main.parse_args(bad)
        assert refused.value.code == 2
        assert "COMMAND" in capsys.readouterr().err  # the whole parser's usage line
