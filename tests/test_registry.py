"""The one registry type (probe.registry.Registry) and the registries built on it."""
from __future__ import annotations

import doctest

import pytest

from probe import registry as registry_module
from probe.errors import ProbeError, UnknownNameError
from probe.registry import Registry


def test_register_lookup_iterate_and_aliases():
    reg = Registry("colour", aliases={"grey": "gray"})
    assert reg.register("red", 1) == 1
    reg.register("gray")(2)  # the decorator form
    assert reg.names() == list(reg) == ["red", "gray"] and len(reg) == 2
    assert reg["RED"] == 1 and reg[" gray "] == 2 and reg["grey"] == 2  # case folded, alias resolved
    assert reg.canonical("Grey") == "gray" and "grey" in reg and "blue" not in reg
    assert reg.get("blue") is None and reg.get("grey") == 2
    assert dict(reg.items()) == {"red": 1, "gray": 2}
    assert reg.listing() == "red, gray (or grey)"
    with pytest.raises(ValueError, match="already registered"):
        reg.register("Red", 3)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("grey", 3)  # an alias is taken too
    reg.register("blue", 3, aliases=["navy", "Blue"])  # aliases given with the entry
    assert reg["NAVY"] == 3 and reg.names() == ["red", "gray", "blue"] and reg.listing().endswith("blue (or navy)")
    with pytest.raises(ValueError, match="already registered"):
        reg.register("teal", 4, aliases=["navy"])
    assert "teal" not in reg


def test_an_unknown_name_is_one_line_listing_the_valid_names():
    reg = Registry("colour", aliases={"grey": "gray"})
    reg.register("red", 1)
    reg.register("gray", 2)
    with pytest.raises(ProbeError) as info:
        reg["blue"]
    assert str(info.value) == "unknown colour 'blue'; choose from red, gray (or grey)"
    assert isinstance(info.value, KeyError) and isinstance(info.value, UnknownNameError)
    with pytest.raises(KeyError):
        del reg["blue"]


def test_case_sensitive_registry_and_replacement(monkeypatch):
    reg = Registry("model", fold_case=False)
    reg.register("e5-small-q4", "spec")
    assert "E5-small-q4" not in reg and reg["e5-small-q4"] == "spec"
    monkeypatch.setitem(reg, "tiny", "stand-in")  # what tests do with the corpus registry
    assert reg["tiny"] == "stand-in" and reg.names() == ["e5-small-q4", "tiny"]
    monkeypatch.undo()
    assert "tiny" not in reg and reg.names() == ["e5-small-q4"]


def test_a_module_entry_is_imported_on_first_lookup():
    import sys

    reg = Registry("analysis")
    reg.register("colorsys", module="colorsys")
    sys.modules.pop("colorsys", None)
    assert "colorsys" in reg and "colorsys" not in sys.modules  # listing imports nothing
    assert reg["colorsys"].__name__ == "colorsys" and "colorsys" in sys.modules
    assert reg["colorsys"] is sys.modules["colorsys"]


def test_module_doctest():
    assert doctest.testmod(registry_module).failed == 0


def test_every_registry_of_the_package_is_a_registry():
    from probe.data import CORPORA
    from probe.data.xtreme import XTREME_TASKS
    from probe.encoders import ENCODERS
    from probe.perturb import PERTURBATIONS
    from probe.presets import PRESETS, TOKENIZERS, get_preset
    from probe.tasks import PROBE_TASKS

    for reg in (CORPORA, XTREME_TASKS, ENCODERS, PERTURBATIONS, PROBE_TASKS, PRESETS, TOKENIZERS):
        assert isinstance(reg, Registry) and reg.names()
    assert PROBE_TASKS.names() == ["pos", "deprel", "langid"] and PROBE_TASKS["upos"] is PROBE_TASKS["pos"]
    assert XTREME_TASKS.names() == ["pos", "ner", "xnli", "pawsx"] and XTREME_TASKS["upos"] is XTREME_TASKS["pos"]
    assert PROBE_TASKS["pos"].labels == XTREME_TASKS["pos"].labels  # one UD tag list
    assert {"e5-small-q4", "auto", "random:"} <= set(ENCODERS.names())
    assert PERTURBATIONS.names() == ["typo", "drop-diacritics", "lowercase"]
    some = PRESETS[PRESETS.names()[0]]
    assert get_preset(some.hub_id) is get_preset(some.name) is some and get_preset("no-such-model") is None
