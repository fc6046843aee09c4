"""The one registry type and the one options parser."""
from dataclasses import dataclass, field
from typing import Literal

import pytest

from souk.errors import ConfigError
from souk.plugins import Registry, option_check, parse_options


def test_register_get_names_and_duplicate_refused():
    reg: Registry[int] = Registry("widget")
    reg.register("a", 1)

    @reg.register("b")
    def b():
        return 2

    assert reg.get("a") == 1 and reg.get("b") is b and reg.names() == ["a", "b"] and "a" in reg
    with pytest.raises(ConfigError, match="registered twice"):
        reg.register("a", 3)
    with pytest.raises(ConfigError, match=r"unknown widget 'c'; known widgets: a, b"):
        reg.get("c")
    reg.register("a", 3, replace=True)
    assert reg.get("a") == 3


def test_override_is_gone_after_the_block_and_restores_a_replaced_name():
    reg: Registry[str] = Registry("thing")
    reg.register("keep", "old")
    with reg.override("fake", "F"), reg.override("keep", "new"):
        assert reg.get("fake") == "F" and reg.get("keep") == "new"
    assert "fake" not in reg and reg.get("keep") == "old"


def test_builtins_load_lazily_on_first_use():
    reg: Registry[object] = Registry("retriever-copy", builtins=("souk.retrieval.bm25",))
    assert reg._loaded is False
    assert reg.names() == []  # the module registers into its own registry, not this one
    assert reg._loaded is True


def test_optional_names_import_their_module_only_when_named():
    reg: Registry[object] = Registry("x", optional={"later": "json"})
    assert reg.names() == ["later"]
    with pytest.raises(ConfigError, match="unknown x 'later'"):
        reg.get("later")  # the module imported but registered nothing: a clear error, not a KeyError


@dataclass
class Opts:
    k: int = 10
    weight: float = 1.0
    mode: Literal["a", "b"] = "a"
    fields: list[str] = field(default_factory=list)
    uri: str | None = None
    depth: int = field(default=5, metadata=option_check(lambda v: v > 0, "a positive integer"))


def test_parse_options_types_defaults_and_messages():
    o = parse_options("stages.x", {"k": 3, "weight": 2, "fields": ["t"], "mode": "b"}, Opts)
    assert (o.k, o.weight, type(o.weight), o.fields, o.mode, o.uri, o.depth) == (3, 2.0, float, ["t"], "b", None, 5)
    for raw, msg in [({"kk": 1}, r"stages.x: unknown key 'kk'; allowed: depth, fields, k, mode, uri, weight"),
                     ({"k": True}, r"stages.x.k: expected an integer, got True"),
                     ({"k": 1.5}, r"stages.x.k: expected an integer, got 1.5"),
                     ({"mode": "c"}, r"stages.x.mode: expected one of a, b, got 'c'"),
                     ({"fields": [1]}, r"stages.x.fields: expected a list of a string, got \[1\]"),
                     ({"uri": 3}, r"stages.x.uri: expected a string or none, got 3"),
                     ({"depth": 0}, r"stages.x.depth: expected a positive integer, got 0")]:
        with pytest.raises(ConfigError, match=msg):
            parse_options("stages.x", raw, Opts)


def test_installed_entry_points_are_read_once_and_only_for_names_not_built_in(monkeypatch):
    import json
    from importlib.metadata import EntryPoint

    import souk.plugins as plugins

    calls = []
    installed = {"souk.gadget": (EntryPoint(name="dumps", value="json:dumps", group="souk.gadget"),
                                 EntryPoint(name="a", value="json:loads", group="souk.gadget"))}
    monkeypatch.setattr(plugins, "_souk_entry_points", lambda: calls.append(1) or installed)
    reg: Registry[object] = Registry("gadget")
    reg.register("a", 1)
    assert reg.get("a") == 1 and "a" in reg and calls == []  # a built-in name: no scan of installed packages
    assert reg.get("dumps") is json.dumps and calls == [1]
    assert reg.names() == ["a", "dumps"] and reg.get("a") == 1 and calls == [1]  # read once; a built-in wins
