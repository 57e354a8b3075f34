"""The structure the README's "Layout" describes, checked on the source: no import cycle inside
jaxlab/, the framework core imports no paper, models, tasks and data never import the loop's
layers, and the packages pyproject.toml installs are the folders."""

import ast

import tomllib

from tests.conftest import REPO

PACKAGE = REPO / "jaxlab"
LOOP_LAYERS = ("jaxlab.loop", "jaxlab.rundir", "jaxlab.cli", "jaxlab.sweep")


def module_imports() -> dict[str, set[str]]:
    """jaxlab module -> the jaxlab modules it imports (anywhere in the file)."""
    files = {
        ".".join(f.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): f
        for f in PACKAGE.rglob("*.py")
    }
    imports = {}
    for name, path in files.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("jaxlab")
            ):
                subs = {f"{node.module}.{alias.name}" for alias in node.names}
                found |= (subs & files.keys()) or {node.module}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("jaxlab")}
        imports[name] = {m for m in found if m in files and m != name}
    return imports


def test_no_import_cycle():
    imports = module_imports()

    def reaches(start, goal, seen):
        return any(
            m == goal or (m not in seen and reaches(m, goal, seen | {m})) for m in imports[start]
        )

    cycles = sorted(
        f"{a} <-> {b}"
        for a in imports
        for b in imports[a]
        if not b.startswith(a + ".") and not a.startswith(b + ".") and reaches(b, a, {b})
    )
    assert cycles == []


def test_core_imports_no_paper_and_models_tasks_data_stay_below_the_loop():
    imports = module_imports()
    core_to_paper = sorted(
        f"{a} -> {b}"
        for a, deps in imports.items()
        if not a.startswith("jaxlab.papers")
        for b in deps
        if b.startswith("jaxlab.papers")
    )
    assert core_to_paper == []
    upward = sorted(
        f"{a} -> {b}"
        for a, deps in imports.items()
        if a.startswith(("jaxlab.models", "jaxlab.tasks", "jaxlab.data", "jaxlab.papers"))
        for b in deps
        if b.startswith(LOOP_LAYERS)
    )
    assert upward == []


def test_pyproject_installs_every_package_and_the_experiments_as_jaxlab_experiments():
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {".".join(f.parent.relative_to(REPO).parts) for f in PACKAGE.rglob("__init__.py")}
    assert set(setuptools["packages"]) == folders | {"jaxlab.experiments"}
    assert setuptools["package-dir"] == {"jaxlab.experiments": "experiments"}
    assert (REPO / "experiments" / "__init__.py").is_file()
    assert not (PACKAGE / "experiments").exists()


def test_the_trial_axis_is_named_only_in_the_sweep_layer():
    """No name in the loop, the run directory, tasks, models or data speaks of trials: a single
    run's path is a program of one run, and a vmapped sweep's TrialProgram stacks them. The
    mesh (`jaxlab.parallel`) names its ``trial`` axis, which splits a sweep's trials."""
    named = []
    for path in PACKAGE.rglob("*.py"):
        if path.relative_to(PACKAGE).parts[0] in ("sweep", "papers", "parallel.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            name = getattr(node, "name", None) or getattr(node, "id", None)
            name = name or getattr(node, "attr", None) or getattr(node, "arg", None)
            if isinstance(name, str) and "trial" in name.lower():
                named.append(f"{path.relative_to(REPO)}:{node.lineno} {name}")
    assert named == []
