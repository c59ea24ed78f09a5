"""The package's import graph, checked with ``ast``: no import cycle between modules of
``probe/`` and no module importing another module's private (``_name``) names; the analyses
(``probe.analyses``) use only public names of the rest of the package."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "probe"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute name of ``from <level dots><target> import ...`` inside ``module``."""
    if level == 0:
        return target or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def imports(only_module_level: bool = False):
    """``(importer, imported module, names, line)`` for every import of a ``probe`` module,
    function-level (lazy) imports included unless ``only_module_level``."""
    mods = _modules()
    out = []
    for name, path in mods.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        nodes = tree.body if only_module_level else ast.walk(tree)
        for node in nodes:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "probe":
                        out.append((name, alias.name, [], node.lineno))
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(name, path.name == "__init__.py", node.level, node.module)
                if target.split(".")[0] != "probe":
                    continue
                for alias in node.names:  # "from . import stats" imports a module
                    sub = f"{target}.{alias.name}"
                    if sub in mods:
                        out.append((name, sub, [], node.lineno))
                    else:
                        out.append((name, target, [alias.name], node.lineno))
    return out


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def _graph(only_module_level: bool) -> dict[str, set[str]]:
    mods = _modules()
    edges: dict[str, set[str]] = {}
    for src, dst, _names, _line in imports(only_module_level):
        # importing probe.x.y runs probe.x's __init__ too, but that is the package, not a peer
        if dst in mods and dst != src and dst != "probe" and not src.startswith(dst + "."):
            edges.setdefault(src, set()).add(dst)
    return edges


def test_the_checker_finds_cycles_and_private_imports():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    assert _resolve("probe.data.ud", False, 2, "languages") == "probe.languages"
    assert _resolve("probe.data", True, 1, "ud") == "probe.data.ud"


def test_no_import_cycle_between_probe_modules():
    cycles = _cycles(_graph(only_module_level=False))
    assert cycles == [], f"import cycles (lazy imports included): {cycles}"


def test_no_private_name_imported_across_modules():
    bad = [f"{src}:{line} imports {dst}.{n}" for src, dst, names, line in imports()
           for n in names if n.startswith("_") and not n.startswith("__") and dst != src]
    assert bad == [], "private names imported across modules:\n" + "\n".join(bad)


def _private_parts(module: str, names: list[str]) -> list[str]:
    return [p for p in module.split(".") if p.startswith("_") and not p.startswith("__")] + \
        [n for n in names if n.startswith("_") and not n.startswith("__")]


def test_the_analyses_import_nothing_private_from_probe():
    """probe.analyses is written like user code: from the rest of the package it imports
    only public modules and names (its own helper module ``_common`` is its business), and
    no analysis edits ``sys.path`` to find the package."""
    used = [(src, dst, names, line) for src, dst, names, line in imports()
            if src.startswith("probe.analyses") and not dst.startswith("probe.analyses")]
    assert len({src for src, *_ in used}) >= 9  # every analysis module uses the package
    bad = [f"{src}:{line} imports {dst} {names}" for src, dst, names, line in used if _private_parts(dst, names)]
    assert bad == [], "private names used by the analyses:\n" + "\n".join(bad)
    assert _private_parts("probe.data._ud", []) == ["_ud"] and _private_parts("probe.cache", ["_x"]) == ["_x"]
    for path in sorted((PACKAGE / "analyses").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            is_sys_path = (isinstance(node, ast.Attribute) and node.attr == "path"
                           and isinstance(node.value, ast.Name) and node.value.id == "sys")
            assert not is_sys_path, f"{path.name}:{node.lineno} touches sys.path"


def test_languages_import_nothing_from_the_corpora():
    """``Language`` is metadata; the corpora (probe.data) refer to languages, never the reverse."""
    used = [(dst, line) for src, dst, _names, line in imports()
            if src == "probe.languages" and (dst == "probe.data" or dst.startswith("probe.data."))]
    assert used == [], f"probe.languages imports probe.data: {used}"
    assert any(src.startswith("probe.data") and dst == "probe.languages" for src, dst, _n, _l in imports())


def test_one_default_model_across_api_and_cli():
    """Issue 16's one vocabulary: every function and command that takes one model defaults to
    the same name."""
    import inspect

    import probe
    from probe.cli import build_parser
    from probe.encoders import DEFAULT_MODEL

    for fn in (probe.layers, probe.fuse, probe.finetune):
        assert inspect.signature(fn).parameters["model"].default == DEFAULT_MODEL, fn.__name__
    parser = build_parser()
    for command in ("extract", "layers", "fuse", "finetune"):
        args = ["--lang", "de"] + (["--task", "pos"] if command in ("fuse", "finetune") else [])
        assert parser.parse_args([command] + args).model == DEFAULT_MODEL, command
