"""tunelens.registry.Registry: one name per entry, an unknown name lists the choices, the
package's modules are imported on the first read and only once."""

from __future__ import annotations

import sys

import pytest

from tunelens.errors import TunelensError
from tunelens.registry import Registry


REG: Registry[str] | None = None  # the registry the lazy-discovery package's modules add to
IMPORTS: list[str] = []  # and the modules it imported, in order


class Alpha:
    pass


class Beta:
    pass


def test_a_duplicate_name_names_both_entries():
    reg: Registry[type] = Registry("widget", "nowhere")
    reg.add("a", Alpha)
    reg.add("a", Alpha)  # the same class again (a module imported twice) is not a clash
    with pytest.raises(TypeError, match=r"two widgets are named 'a': test_registry\.Alpha and test_registry\.Beta"):
        reg.add("a", Beta)
    with pytest.raises(TypeError, match="two widgets are named 'a'"):
        reg.add("b", Beta, aliases=("a",))  # an alias may not take a name either
    assert reg.entries(load=False) == [Alpha]


def test_origin_names_what_an_entry_came_from():
    reg: Registry[tuple] = Registry("method", "nowhere", origin=lambda entry: entry[1])
    reg.add("x", ("first", Alpha))
    reg.add("x", ("again", Alpha))  # same origin: replaced
    with pytest.raises(TypeError, match=r"test_registry\.Alpha and test_registry\.Beta"):
        reg.add("y", ("other", Beta), aliases=("x",))


def test_unknown_name_lists_the_choices(tmp_path, monkeypatch):
    _package(tmp_path, monkeypatch, "reg_pkg_choices", {})
    reg: Registry[type] = Registry("widget", "reg_pkg_choices")
    for name in ("c", "a", "b"):
        reg.add(name, type(name.upper(), (), {}))
    with pytest.raises(TunelensError, match=r"^unknown widget 'x': choose one of a, b, c$"):
        reg.get("x")
    reg.add("d", Alpha, aliases=("dee",))
    with pytest.raises(TunelensError, match=r"choose one of a, b, c, d \(or the aliases dee\)$"):
        reg.get("x")
    assert reg.get("dee") is Alpha and reg.resolve("dee") == "d" and reg.aliases() == {"dee": "d"}
    assert reg.names() == ("a", "b", "c", "d") and "dee" in reg and "x" not in reg


def test_entries_are_sorted_by_order_then_name():
    reg: Registry[type] = Registry("widget", "nowhere", order=lambda c: c.order)
    reg.add("late", type("Late", (), {"order": 2}))
    reg.add("b", type("B", (), {"order": 1}))
    reg.add("a", type("A", (), {"order": 1}))
    assert [c.__name__ for c in reg.entries(load=False)] == ["A", "B", "Late"]


def _package(tmp_path, monkeypatch, name: str, modules: dict[str, str]) -> None:
    root = tmp_path / name
    root.mkdir()
    (root / "__init__.py").write_text("")
    for module, text in modules.items():
        (root / f"{module}.py").write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)


def test_the_package_is_discovered_lazily_and_once(tmp_path, monkeypatch):
    name = "reg_pkg_lazy"
    reg: Registry[str] = Registry("plug-in", name)
    monkeypatch.setattr(sys.modules[__name__], "REG", reg)
    body = (f"import sys\nfrom {__name__} import REG\n"
            "REG.add(__name__.rpartition('.')[2], __name__)\n"
            "sys.modules['" + __name__ + "'].IMPORTS.append(__name__)\n")
    _package(tmp_path, monkeypatch, name, {"one": body, "two": body, "_private": body})
    monkeypatch.setattr(sys.modules[__name__], "IMPORTS", [])
    assert name not in sys.modules and IMPORTS == []
    assert reg.entries(load=False) == []  # reading what was added so far imports nothing
    assert reg.names() == ("one", "two")  # the first read imports every module but _private
    assert reg.get("two") == f"{name}.two" and reg.entries() == [f"{name}.one", f"{name}.two"]
    assert IMPORTS == [f"{name}.one", f"{name}.two"]  # once each
    for module in ("one", "two"):
        monkeypatch.delitem(sys.modules, f"{name}.{module}")
