"""No module of the app imports what the one-file exe leaves out (kaodian.spec ``excludes``).

The spec drops standard modules nothing imports (``decimal``, ``asyncio``, ``xml``, …) to
keep the exe small; a new import of one of them (``statistics`` pulls in ``decimal``) works
from source and in every test, and fails only in the frozen exe (CI's smoke test saw
``ModuleNotFoundError: No module named 'decimal'`` at the drill's start). This imports every
``kd`` module and ``main`` in a fresh interpreter and checks none of the excluded modules
came with them.
"""

import ast
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: excluded for the build's own reasons, not because the app never imports them
NOT_STDLIB = {"cryptography", "numpy", "pytest", "setuptools", "pkg_resources", "distutils", "cffi", "pycparser",
              "test", "tkinter.test"}


def spec_excludes():
    """The string entries of the spec's ``excludes = [...]`` list literal."""
    with open(os.path.join(ROOT, "kaodian.spec"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "excludes" for t in node.targets):
            literal = node.value.left if isinstance(node.value, ast.BinOp) else node.value
            return [e.value for e in literal.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    raise AssertionError("kaodian.spec has no excludes list")


PROBE = """
import json, pkgutil, sys, importlib
import kd, main
for info in pkgutil.walk_packages(kd.__path__, "kd."):
    importlib.import_module(info.name)
print(json.dumps(sorted(sys.modules)))
"""


def test_no_kd_module_imports_a_module_the_exe_leaves_out():
    excluded = [name for name in spec_excludes() if name not in NOT_STDLIB and not name.startswith("PIL.")]
    assert "decimal" in excluded and "asyncio" in excluded  # the list was read
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.returncode == 0, out.stderr
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    found = sorted(name for name in excluded if name in loaded)
    assert found == [], "imported by the app but left out of the exe: {}".format(found)
