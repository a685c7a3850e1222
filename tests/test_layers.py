"""The house rules of the package, checked: data flows one way, orchestration on top.

Each module has a rank; it may import (at module level or inside a function) only modules of
a lower rank, so there is no import circle and no upward import: `fit` never imports
training, `report` never plots, `sweep` never fits or plots, only `pipeline` chains stages,
and the CLI sits on top (README, "The parts").
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "scaling"

RANK = {
    # bottom: import nothing of scaling but each other below them
    "validate": 0, "paths": 0, "schedules": 0, "monitor": 0, "fit": 0,
    "data": 1,
    "config": 2,
    "experiment": 3, "flops": 3, "attention": 3, "checkpoint": 3, "sweep.config": 3, "parametrization": 3,
    "hooks": 4, "family": 4, "results": 4, "tables": 4, "model": 4, "sweep.demo": 4, "memory": 4,
    "metrics": 5, "mesh": 5, "step": 6, "report": 5, "sweep.plan": 5, "verification": 5,
    "train": 7, "plot": 6, "question_plots": 7, "sweep": 6, "sweep.throughput": 7, "questions": 6, "coordcheck": 7,
    "sweep.run": 8,
    "pipeline": 9,
    "cli": 10, "__main__": 11,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _rank_of(module: str) -> tuple[str, int]:
    """The ranked unit a module belongs to: itself, or its package (data.*, fit.*)."""
    while module not in RANK and "." in module:
        module = module.rsplit(".", 1)[0]
    assert module in RANK, f"scaling.{module} has no rank in tests/test_layers.py: give it one"
    return module, RANK[module]


def _imports(tree: ast.AST, module: str) -> set[str]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.startswith("scaling"):
            base = node.module.removeprefix("scaling").lstrip(".")
            if base:
                out.add(base)
            else:  # from scaling import x, y
                out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name.removeprefix("scaling.") for a in node.names if a.name.startswith("scaling."))
    return out


def test_every_import_points_down():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        if not module:
            continue
        unit, rank = _rank_of(module)
        for target in _imports(ast.parse(path.read_text()), module):
            target_unit, target_rank = _rank_of(target)
            if target_unit == unit or target_unit.startswith(unit + ".") and unit in ("sweep",):
                continue  # a package's own modules
            if target_rank >= rank:
                upward.append(f"scaling.{module} (rank {rank}) imports scaling.{target} (rank {target_rank})")
    assert not upward, "\n".join(upward)


# What ranks alone allow but the sketch forbids: sweeps never fit or plot, training never
# fits, reports or plots, reports never plot, and `fit` takes arrays (no training code).
FORBIDDEN = {
    "sweep": ("report", "plot", "fit", "pipeline"),
    "train": ("report", "plot", "fit", "sweep", "pipeline"),
    "step": ("report", "plot", "fit", "sweep", "pipeline"),
    "report": ("plot", "sweep", "train", "step", "pipeline"),
    "questions": ("plot", "question_plots", "sweep", "train", "step", "pipeline"),
    "question_plots": ("fit", "sweep", "train", "step", "pipeline"),
}


def test_no_stage_reaches_into_another():
    crossings = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        for owner, banned in FORBIDDEN.items():
            if module == owner or module.startswith(owner + "."):
                for target in _imports(ast.parse(path.read_text()), module):
                    if any(target == b or target.startswith(b + ".") for b in banned):
                        crossings.append(f"scaling.{module} imports scaling.{target}")
    assert not crossings, "\n".join(crossings)


def test_every_module_has_a_rank():
    for path in PACKAGE.rglob("*.py"):
        if _module_name(path):
            _rank_of(_module_name(path))
