"""dvc.yaml against the code: each stage's command hands its flow every path, each stage
depends on exactly the packages its flow imports, the EDTalk stages on every shared `train`
key, and every report in reports/ has a stage."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import subprocess
from functools import cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CODE = ("edtalk", "metrics", "pipeline")
# Imported by every flow, and without effect on what a stage writes: the package version
# and Prefect's environment defaults.
# pipeline/artifacts.py only publishes Prefect artifacts: nothing DVC tracks depends on it
NOT_A_DEPENDENCY = {"edtalk/__init__.py", "pipeline/__init__.py", "pipeline/artifacts.py"}


def _module_path(name: str) -> Path | None:
    """The project file of a dotted module name (None outside the project)."""
    base = ROOT.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imported(path: Path) -> set[str]:
    """Project modules one file imports anywhere in it (function-level imports included),
    with their parent packages (importing ``a.b.c`` runs ``a`` and ``a.b`` first)."""
    package = ".".join(path.relative_to(ROOT).parent.parts)
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    found = set()
    for name in names:
        parts = name.split(".")
        found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1)
                     if _module_path(".".join(parts[:i])) is not None)
    return {n for n in found if n.split(".")[0] in CODE}


@cache
def _closure(module: str) -> frozenset[Path]:
    todo, seen = [module], set()
    while todo:
        name = todo.pop()
        path = _module_path(name)
        if name in seen or path is None:
            continue
        seen.add(name)
        todo.extend(_imported(path))
    return frozenset(p.relative_to(ROOT) for p in map(_module_path, seen) if p is not None)


def _required(files: frozenset[Path]) -> set[str]:
    """The dependency naming each file: its package below edtalk/ or `metrics` as a whole,
    a module at the top of edtalk/ or a pipeline/ file by itself."""
    out = set()
    for f in files:
        parts = f.parts
        if str(f) in NOT_A_DEPENDENCY:
            continue
        if parts[0] == "metrics":
            out.add("metrics")
        elif parts[0] == "edtalk" and len(parts) > 2:
            out.add("/".join(parts[:2]))
        else:
            out.add(str(f))
    return out


@cache
def _stages() -> dict[str, dict]:
    """Every stage of dvc.yaml, foreach and ${} resolved by DVC itself."""
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        return {s.name: {"cmd": s.cmd, "deps": [d.def_path for d in s.deps],
                         "params": [k for p in s.params for k in p.params],
                         "outs": [o.def_path for o in s.outs]}
                for s in repo.index.stages}


@pytest.mark.parametrize("name", sorted(_stages()))
def test_stage_command_hands_its_flow_every_path(name: str) -> None:
    """Paths come from dvc.yaml alone: the command passes each keyword argument of the flow
    (the `model_path` overrides of a params.yaml checkpoint aside) and nothing else."""
    cmd = _stages()[name]["cmd"]
    module = re.match(r"python -m pipeline\.(\w+)", cmd).group(1)
    flow = getattr(importlib.import_module(f"pipeline.{module}"), module)
    takes = set(inspect.signature(flow.fn).parameters) - {"params", "model_path"}
    passed = [o.replace("-", "_") for o in re.findall(r"\s--([a-z][a-z-]*)", cmd)]
    assert sorted(passed) == sorted(takes), name


@pytest.mark.parametrize("name", sorted(_stages()))
def test_stage_depends_on_exactly_the_code_its_flow_imports(name: str) -> None:
    stage = _stages()[name]
    flow = re.match(r"python -m (pipeline\.\w+)", stage["cmd"])
    assert flow, f"{name}: the command does not run a flow: {stage['cmd']}"
    required = _required(_closure(flow.group(1)))
    declared = {d for d in stage["deps"] if d.split("/")[0] in CODE}
    assert required - declared == set(), f"{name}: imported but not a dependency"
    assert declared - required == set(), f"{name}: a dependency its flow does not import"


def test_edtalk_stages_depend_on_every_shared_train_key_and_their_own_section() -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    own = {"autoencoder", "mouth_pose", "expression"}
    for key in own:
        declared = set(_stages()[f"train@{key}"]["params"])
        expected = {"base.seed", "base.profile"} | {f"train.{k}" for k in params["train"]
                                                    if k not in own or k == key}
        assert declared == expected, key


# Reports a script writes instead of a stage (the script must name the file).
SCRIPT_REPORTS = {"reports/plots/prefect-ui.png": "scripts/prefect_ui_screenshot.py"}


def test_every_report_in_git_is_written_by_a_stage() -> None:
    tracked = subprocess.run(["git", "ls-files", "reports"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    outs = {o for s in _stages().values() for o in s["outs"]}
    reports = [f for f in tracked if not f.endswith(".gitignore")]
    assert reports and [f for f in reports if f not in outs and f not in SCRIPT_REPORTS] == []
    for report, script in SCRIPT_REPORTS.items():
        assert report in (ROOT / script).read_text(), (report, script)
