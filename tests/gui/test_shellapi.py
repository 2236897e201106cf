"""The shell the pages use is one Protocol (kd.views.shellapi): the real ``Shell`` and the
tests' ``FakeShell`` both have every member, each method with the Protocol's parameters,
and so do the real and the scripted dialogs. A fake that drifts fails here."""

import inspect

import pytest

from kd.core.services import Core
from kd.views.dialogs import Dialogs
from kd.views.shellapi import DialogsAPI, ShellAPI
from tests.support.env import make_env
from tests.support.ui import FakeShell, ScriptedDialogs

pytestmark = pytest.mark.gui


def members(protocol):
    """(attributes, methods) the Protocol declares (its own and its bases')."""
    attributes, methods = set(), {}
    for klass in reversed(protocol.__mro__):
        if klass is object or klass.__module__ == "typing":
            continue
        attributes.update(getattr(klass, "__annotations__", {}))
        for name, value in vars(klass).items():
            if name.startswith("_"):
                continue
            if isinstance(value, property):
                attributes.add(name)
            elif inspect.isfunction(value):
                methods[name] = value
    return attributes, methods


def parameters(fn, bound):
    """(name, kind, default) of each parameter, without ``self``."""
    params = list(inspect.signature(fn).parameters.values())
    if not bound:
        params = params[1:]
    return [(p.name, p.kind, p.default) for p in params]


def drift(protocol, instance):
    """What ``instance`` lacks or has otherwise than ``protocol`` declares."""
    attributes, methods = members(protocol)
    problems = ["missing {}".format(name) for name in sorted(attributes) if not hasattr(instance, name)]
    for name, declared in sorted(methods.items()):
        actual = getattr(instance, name, None)
        if actual is None or not callable(actual):
            problems.append("missing method {}".format(name))
        elif parameters(actual, True) != parameters(declared, False):
            want = inspect.signature(declared)
            want = want.replace(parameters=list(want.parameters.values())[1:])
            problems.append("{}{} is not {}{}".format(name, inspect.signature(actual), name, want))
    return problems


def test_the_protocols_have_members():
    attributes, methods = members(ShellAPI)
    assert {"root", "core", "loop", "app", "user", "dialogs"} <= attributes
    assert {"notify", "open_url", "show", "refresh_steps", "post"} <= set(methods)
    assert {"error", "confirm", "open_file", "choose_dir", "ask_text"} <= set(members(DialogsAPI)[1])


def test_shell_and_fake_shell_are_the_protocol(tmp_path, gui_root, scripted):
    from kd.views.shell import Shell

    env = make_env(tmp_path / "site", rooms=1, sessions=1, candidates=1)
    core = Core(env.ctx)
    shell = Shell(gui_root, core, dialogs=scripted, browser=lambda url: None)
    fake = FakeShell(gui_root, core, dialogs=scripted)
    try:
        assert drift(ShellAPI, shell) == []
        assert drift(ShellAPI, fake) == []
        assert drift(DialogsAPI, Dialogs(gui_root)) == []
        assert drift(DialogsAPI, ScriptedDialogs(gui_root)) == []
    finally:
        fake.close()
        shell.close()
        env.close()


def test_a_drifting_fake_is_caught():
    class Drifted:
        root = core = loop = app = None
        user = "admin"
        last_site_info = None
        dialogs = None

        def notify(self, text, level="info"):  # renamed parameter
            pass

        def open_url(self, path):
            pass

        def show(self, label):
            pass

        def post(self, fn):
            pass

    assert drift(ShellAPI, Drifted()) == ["notify(text, level='info') is not notify(text: str, kind: str = 'info')"
                                          " -> None", "missing method refresh_steps"]
