"""Package structure: torch-free imports, layers that point down, the CLI's lazy dispatch."""

from __future__ import annotations

import argparse
import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import learnlr
from learnlr.cli import COMMANDS, main

SRC = Path(learnlr.__file__).parent


def _python(code: str) -> subprocess.CompletedProcess:
    # A fresh interpreter: sys.modules shows exactly what an import costs.
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)


def test_core_and_optax_adapter_import_no_torch():
    done = _python("import learnlr, learnlr.control, learnlr.integrations.optax, sys; "
                   "assert 'torch' not in sys.modules, 'torch imported'; "
                   "from learnlr import GreedyConfig; assert 'torch' not in sys.modules; "
                   "from learnlr import GreedyLR; assert 'torch' in sys.modules; "
                   "print(GreedyLR.__module__)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "learnlr.torch.greedy"


def test_bench_records_and_store_import_no_torch():
    done = _python("import learnlr.bench.records, learnlr.bench.store, learnlr.bench.summary, sys; "
                   "assert 'torch' not in sys.modules, 'torch imported'")
    assert done.returncode == 0, done.stderr


def test_help_and_version_import_no_area():
    done = _python("import sys\nfrom learnlr.cli import main\n"
                   "for argv in (['--help'], ['--version']):\n"
                   "    try:\n        main(argv)\n    except SystemExit as e:\n"
                   "        assert e.code == 0\n"
                   "assert 'torch' not in sys.modules and 'learnlr.bench' not in sys.modules")
    assert done.returncode == 0, done.stderr
    assert "rl" in done.stdout and "bench" in done.stdout and learnlr.__version__ in done.stdout


def test_lazy_names_list_and_reject_like_modules():
    import learnlr.control

    assert "RollingMean" in dir(learnlr.control)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        learnlr.control.Nope  # noqa: B018


@pytest.mark.parametrize(("blocked", "argv", "extra"), [
    ("sklearn", ["list"], "bench"),
    ("rich", ["demo"], "bench"),
    ("gymnasium", ["rl", "eval"], "rl"),
])
def test_a_missing_extra_is_one_line_and_exit_2(blocked, argv, extra):
    # sys.modules[name] = None makes the module unimportable (and invisible to find_spec).
    done = _python(f"import sys; sys.modules[{blocked!r}] = None\n"
                   f"from learnlr.cli import main\nsys.exit(main({argv!r}))")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f'pip install "learnlr[{extra}]"' in lines[0] and repr(blocked) in lines[0]
    listed = _python(f"import sys; sys.modules[{blocked!r}] = None\n"
                     "from learnlr.cli import main\nmain(['--help'])")
    assert f"    {argv[0]} " in listed.stdout  # still listed in --help


def test_the_command_table_matches_what_each_area_registers():
    for module in {c.module for c in COMMANDS}:
        parser = argparse.ArgumentParser()
        sub = parser.add_subparsers()
        importlib.import_module(module).register(sub)
        assert set(sub.choices) == {c.name for c in COMMANDS if c.module == module}


def test_usage_errors_still_exit_2():
    with pytest.raises(SystemExit) as info:
        main(["nosuchcommand"])
    assert info.value.code == 2


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_layers_point_down():
    for path in sorted(SRC.rglob("*.py")):
        imported = _imports(path)
        relative = path.relative_to(SRC).as_posix()
        if relative.startswith("bench/"):
            assert not any(n == "learnlr.rl" or n.startswith("learnlr.rl.") for n in imported), (
                f"{relative} imports learnlr.rl")
        if "/" in relative:  # a subpackage
            assert "learnlr.cli" not in imported, f"{relative} imports learnlr.cli"
        if relative.startswith("control/") or relative == "bench/records.py":
            assert not any(n.split(".")[0] in ("torch", "numpy") for n in imported), relative


def test_rl_registers_its_schedules_into_the_bench_registry_in_place():
    from learnlr.bench.schedules import SCHEDULES, ScheduleSpec, register_schedule

    names = list(SCHEDULES)
    assert names.index("rl") == names.index("hf_greedy") + 1
    assert names.index("rl_deep") == names.index("rl") + 1
    with pytest.raises(ValueError, match="after must be a registered schedule"):
        register_schedule(ScheduleSpec("x", "fixed", "x", SCHEDULES["constant"].builder),
                          after="nope")
    assert "x" not in SCHEDULES


def test_figures_leave_the_callers_matplotlib_backend_alone(tmp_path):
    png = tmp_path / "nmf.png"
    done = _python(
        "import matplotlib; matplotlib.use('pdf')\n"
        "from learnlr.cli import main\n"
        f"assert main(['nmf', 'solve', '--problem', 'planted:12x8', '--rank', '2', '--steps', "
        f"'20', '--no-progress', '--plot', {str(png)!r}]) == 0\n"
        "import matplotlib.pyplot as plt\n"
        "assert matplotlib.get_backend() == 'pdf', matplotlib.get_backend()\n"
        "assert plt.get_fignums() == []  # nothing left open in pyplot's registry\n")
    assert done.returncode == 0, done.stderr
    assert png.read_bytes()[:4] == b"\x89PNG"
