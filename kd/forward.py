"""Attributes an object shows for one of its parts: ``lock_id = Forward[str]("dongle")``.

Several objects are made of a part whose attributes they show as their own: the dongle
emulator (``kd.lock.emutransport.LockEmulator``) those of its ``Dongle``, the platform
simulator those of its ``SimData``, the LAN server the counts of its connection
registry, the GUI's ``App`` those of its ``Site``. ``Forward`` is the one descriptor for
all of them, in place of a property per attribute:

- ``name = Forward[T](part)`` reads ``self.<part>.name`` (``Forward[T](part, "other")``
  reads ``self.<part>.other``); setting it raises ``AttributeError``, as a property without
  a setter does.
- ``ForwardSettable[T](part)`` also sets ``self.<part>.name`` (a test knob of the part).
- ``missing=value``: what reading gives while the part is ``None`` (not built yet, or
  closed); without it, reading then raises ``AttributeError`` as ``None.name`` would.

``T`` is only for the type checker: it is what the part's attribute holds.
"""

from typing import Any, Generic, NoReturn, Optional, TypeVar, overload

T = TypeVar("T")

_REQUIRED: Any = object()


class Forward(Generic[T]):
    """A read-only attribute that is ``getattr(self.<part>, name)`` (see the module docstring)."""

    def __init__(self, part: str, name: str = "", *, doc: str = "", missing: Any = _REQUIRED) -> None:
        self.part = part
        self.name = name
        self.missing = missing
        self.__doc__ = doc

    def __set_name__(self, owner: type, name: str) -> None:
        if not self.name:
            self.name = name
        if not self.__doc__:
            self.__doc__ = "``self.{}.{}``".format(self.part, self.name)

    @overload
    def __get__(self, obj: None, owner: Optional[type] = None) -> "Forward[T]": ...

    @overload
    def __get__(self, obj: object, owner: Optional[type] = None) -> T: ...

    def __get__(self, obj: Optional[object], owner: Optional[type] = None) -> Any:
        if obj is None:
            return self
        part = getattr(obj, self.part)
        if part is None and self.missing is not _REQUIRED:
            return self.missing
        return getattr(part, self.name)

    def __set__(self, obj: object, value: NoReturn) -> None:
        raise AttributeError("{} is read-only: it is {}.{}".format(self.name, self.part, self.name))


class ForwardSettable(Forward[T]):
    """A ``Forward`` that also sets the part's attribute."""

    def __set__(self, obj: object, value: T) -> None:
        setattr(getattr(obj, self.part), self.name, value)
