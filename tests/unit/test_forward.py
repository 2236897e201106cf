"""kd.forward: attributes an object shows for one of its parts."""

import pytest

from kd.forward import Forward, ForwardSettable


class _Part:
    def __init__(self):
        self.name = "part"
        self.knob = 1.0


class _Whole:
    name = Forward("part")
    other = Forward("part", "name", doc="the part's name again")
    knob = ForwardSettable("part")
    maybe = Forward("part", "name", missing=None)

    def __init__(self, part):
        self.part = part


def test_reads_the_parts_attribute_and_sets_only_a_settable_one():
    whole = _Whole(_Part())
    assert whole.name == "part" and whole.other == "part"
    whole.knob = 2.5
    assert whole.part.knob == 2.5 and whole.knob == 2.5
    with pytest.raises(AttributeError):
        whole.name = "changed"
    assert whole.part.name == "part" and "name" not in vars(whole)


def test_a_missing_part_gives_the_default_or_raises():
    whole = _Whole(None)
    assert whole.maybe is None
    with pytest.raises(AttributeError):
        whole.name  # noqa: B018


def test_the_class_attribute_is_the_descriptor_with_its_doc():
    assert isinstance(_Whole.name, Forward) and _Whole.name.__doc__ == "``self.part.name``"
    assert _Whole.other.__doc__ == "the part's name again"
