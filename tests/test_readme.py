"""The README's short commands, run as written in a new shell with the
environment activated, as a newcomer would paste them.

A fenced block right after the line ``<!-- readme-test: short -->`` holds
commands that the README says take under a minute. They run in order, in one
scratch directory (so ``runs/`` stays out of the checkout; ``src``, ``scripts``,
``examples``, ``benchmarks`` and ``node_modules`` are linked in), each in a fresh
``bash -c 'source .venv/bin/activate && ...'``. A command must exit 0, or the
code its ``# exit N`` comment states.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- readme-test: short -->"


def short_commands(text: str) -> list:
    """(command, expected exit code) of every marked block, continuations joined."""
    out = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() != MARKER:
            i += 1
            continue
        i += 1
        while i < len(lines) and not lines[i].strip():
            i += 1
        if i >= len(lines) or not lines[i].startswith("```"):
            raise AssertionError(f"README line {i}: {MARKER} must be followed by a fenced block")
        i += 1
        pending = ""
        while i < len(lines) and not lines[i].startswith("```"):
            line = lines[i]
            i += 1
            if pending:
                line = line.lstrip()
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1].rstrip() + " "
                continue
            line = pending + line
            pending = ""
            command, _, comment = line.partition(" #")
            if line.lstrip().startswith("#") or not command.strip():
                continue
            code = re.search(r"\bexit (\d+)", comment)
            out.append((command.strip(), int(code.group(1)) if code else 0))
        i += 1
    return out


def _activate() -> Path:
    for venv in (ROOT / ".venv", Path(sys.prefix)):
        if (venv / "bin" / "activate").exists() and (venv / "bin" / "learningchain").exists():
            return venv / "bin" / "activate"
    pytest.skip("no virtual environment with the learningchain command (run ./scripts/setup)")


def test_the_marker_finds_the_short_commands():
    cmds = short_commands((ROOT / "README.md").read_text())
    assert len(cmds) >= 5
    assert any(c.startswith("learningchain train") for c, _ in cmds)
    assert any(code == 1 for _, code in cmds)  # the final check that must catch the attacker
    assert short_commands(f"{MARKER}\n```\na \\\n  b  # exit 1\n# note\n```\n") == [("a b", 1)]


@pytest.mark.slow
def test_every_short_readme_command_runs_as_written(tmp_path):
    activate = _activate()
    for name in ("src", "scripts", "benchmarks", "examples", "node_modules", "pyproject.toml"):
        if (ROOT / name).exists():
            (tmp_path / name).symlink_to(ROOT / name)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    for command, expected in short_commands((ROOT / "README.md").read_text()):
        proc = subprocess.run(["bash", "-c", f"source '{activate}' && {command}"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == expected, (f"{command!r} exited {proc.returncode}, README says {expected}\n"
                                             f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def test_the_lc_wrapper_runs_the_checkouts_command_from_any_directory(tmp_path):
    activate = _activate()
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    (checkout / "scripts" / "lc").write_bytes((ROOT / "scripts" / "lc").read_bytes())
    (checkout / "scripts" / "lc").chmod(0o755)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    missing = subprocess.run([str(checkout / "scripts" / "lc"), "--version"], cwd=elsewhere,
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "run ./scripts/setup first" in missing.stderr
    (checkout / ".venv").symlink_to(activate.parent.parent)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    ok = subprocess.run([str(checkout / "scripts" / "lc"), "--version"], cwd=elsewhere, env=env,
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and ok.stdout.startswith("learningchain "), ok.stderr
