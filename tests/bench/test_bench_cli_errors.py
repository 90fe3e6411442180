"""Every way a user can break `learnlr bench | report | list` ends in one line and an exit code.

Real corrupted files and real folders; the store is never rewritten. The garbage-store case
runs the real `learnlr` in a subprocess (its whole stderr is checked for a traceback); the
others call the same ``main`` in-process, where a traceback would be an exception out of it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from bench_toy_workload import TOY_PLUGIN

from learnlr.bench.store import ExperimentStore, StoreError
from learnlr.cli import main

TOY = ["--plugin", TOY_PLUGIN, "--workloads", "toy-logreg", "--schedules", "constant", "cosine",
       "--seeds", "1", "--workers", "1"]


def _learnlr(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "learnlr.cli", *args], env=env,
                          capture_output=True, text=True, timeout=300)


class _Done:
    def __init__(self, returncode: int, stderr: str) -> None:
        self.returncode, self.stderr = returncode, stderr


def _main(capsys: pytest.CaptureFixture[str], *args: str) -> _Done:
    capsys.readouterr()
    code = main(list(args))
    return _Done(code, capsys.readouterr().err)


def _one_line_error(done: subprocess.CompletedProcess[str] | _Done, *expected: str) -> str:
    """Exit 2, no traceback, one line on stderr containing ``expected``."""
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for text in expected:
        assert text in lines[0]
    return lines[0]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def real_store(tmp_path_factory) -> Path:
    """A finished toy benchmark folder (copied per test before it is damaged)."""
    out = tmp_path_factory.mktemp("real") / "run"
    assert main(["bench", "--suite", "tiny", *TOY, "--out", str(out)]) == 0
    return out


def _damaged_copy(real_store: Path, tmp_path: Path, offset: int, length: int) -> Path:
    out = tmp_path / "damaged"
    shutil.copytree(real_store, out)
    db = out / "runs.sqlite"
    assert not (out / "runs.sqlite-wal").exists() or (out / "runs.sqlite-wal").stat().st_size == 0
    with db.open("r+b") as file:
        file.seek(offset)
        file.write(b"\xde\xad\xbe\xef" * (length // 4))
    return out


def test_garbage_file_as_store_is_refused_and_left_untouched(tmp_path, toy_env):
    out = tmp_path / "out"
    out.mkdir()
    db = out / "runs.sqlite"
    db.write_bytes(b"this is not a database, just bytes\n" * 200)
    before = _digest(db)
    for args in (["report", str(out)], ["bench", "--suite", "tiny", *TOY, "--out", str(out)]):
        _one_line_error(_learnlr(*args, env=toy_env), str(db), "not a SQLite database")
        assert _digest(db) == before
    assert sorted(p.name for p in out.iterdir()) == ["runs.sqlite"]


def test_store_with_damaged_schema_page_is_refused_untouched(real_store, tmp_path, capsys):
    out = _damaged_copy(real_store, tmp_path, offset=100, length=3000)  # page 1 after the header
    db = out / "runs.sqlite"
    before = _digest(db)
    for args in (["report", str(out)], ["bench", "--suite", "tiny", *TOY, "--out", str(out)]):
        _one_line_error(_main(capsys, *args), str(db), "malformed")
        assert _digest(db) == before


def test_store_with_damaged_data_pages_fails_in_one_line(real_store, tmp_path, capsys):
    db_size = (real_store / "runs.sqlite").stat().st_size
    out = _damaged_copy(real_store, tmp_path, offset=8192, length=db_size - 8192)
    before = _digest(out / "runs.sqlite")
    for args in (["report", str(out)], ["bench", "--suite", "tiny", *TOY, "--out", str(out)]):
        _one_line_error(_main(capsys, *args), str(out / "runs.sqlite"), "malformed")
    assert _digest(out / "runs.sqlite") == before


def test_a_foreign_sqlite_database_is_not_written_into(tmp_path):
    db = tmp_path / "runs.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER)")
    conn.close()
    before = _digest(db)
    with pytest.raises(StoreError, match="not a learnlr store"):
        ExperimentStore(db)
    assert _digest(db) == before


@pytest.mark.parametrize("command", ["bench", "report"])
def test_out_that_is_a_file_or_under_a_file_is_a_usage_error(command, real_store, tmp_path,
                                                             capsys):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me\n")
    for out in (a_file, a_file / "sub"):
        args = (["bench", "--suite", "tiny", *TOY, "--out", str(out)] if command == "bench"
                else ["report", str(real_store), "--out", str(out)])
        _one_line_error(_main(capsys, *args), "--out", str(a_file), "not a folder")
    assert a_file.read_text() == "keep me\n"


def test_unwritable_report_file_is_one_line(real_store, tmp_path, capsys):
    # A folder where report.md should go: writing fails even as root.
    out = tmp_path / "elsewhere"
    (out / "report.md").mkdir(parents=True)
    line = _one_line_error(_main(capsys, "report", str(real_store), "--out", str(out)),
                           str(out / "report.md"))
    assert "directory" in line.lower()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary left


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a chmod 555 folder anyway; "
                    "the file-as---out and folder-as-report.md cases cover the write errors")
def test_read_only_out_folder_is_a_usage_error(real_store, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        _one_line_error(_main(capsys, "bench", "--suite", "tiny", *TOY, "--out", str(ro)),
                        "--out", "not writable")
        _one_line_error(_main(capsys, "report", str(real_store), "--out", str(ro)),
                        "--out", "not writable")
    finally:
        ro.chmod(0o755)
    assert list(ro.iterdir()) == []


def test_report_out_leaves_the_store_folder_as_it_was(real_store, tmp_path, capsys):
    src = tmp_path / "src"
    shutil.copytree(real_store, src)
    before = {p.name: _digest(p) for p in src.iterdir()}
    out = tmp_path / "report-here"
    done = _main(capsys, "report", str(src), "--out", str(out), "--plugin", TOY_PLUGIN)
    assert done.returncode == 0, done.stderr
    assert (out / "report.md").exists() and (out / "lr_schedules.png").exists()
    assert {p.name: _digest(p) for p in src.iterdir() if p.name in before} == before
    assert {p.name for p in src.iterdir()} - set(before) <= {"runs.sqlite-wal", "runs.sqlite-shm"}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--suite", "tiny", "--plugin", TOY_PLUGIN], ["--plugin", "--workloads"]),
        (["--suite", "quick", "--plugin", TOY_PLUGIN, "--workloads", "toy-tiny-only"],
         ["--suite quick", "toy-tiny-only", "no budget"]),
    ],
)
def test_bench_checks_plugins_and_budgets_up_front(tmp_path, capsys, args, expected):
    out = tmp_path / "x"
    _one_line_error(_main(capsys, "bench", *args, "--out", str(out)), *expected)
    assert not out.exists()


def test_an_empty_path_is_a_usage_error_not_the_current_folder(tmp_path, capsys, monkeypatch):
    # Path("") is ".": `--out ""` used to fill the current folder with a store and a report.
    monkeypatch.chdir(tmp_path)
    for args, option in ((["bench", "--suite", "tiny", *TOY, "--out", ""], "--out"),
                         (["report", ""], "DIR")):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:  # argparse's usage error
            main(args)
        assert exit_info.value.code == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert option in last and "empty path" in last, last
    assert list(tmp_path.iterdir()) == []


def test_report_of_a_store_without_comparison_cells_is_a_usage_error(tmp_path, capsys):
    # It used to write an empty "0 cells" report (and a matplotlib warning) and exit 0.
    ExperimentStore(tmp_path / "runs.sqlite").close()
    _one_line_error(_main(capsys, "report", str(tmp_path)), "no comparison cells")
    assert not (tmp_path / "report.md").exists()
