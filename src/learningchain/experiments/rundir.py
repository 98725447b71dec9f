"""Run directories that are replaced only by a run that ended.

A run writes its files into a temporary sibling of ``--out``
(``.<name>.new-<pid>``, same parent, so the final move is a rename) and
:func:`in_run_dir` moves them into place once the run has ended:

* ``--out`` does not exist: the temporary directory is renamed to it;
* ``--out`` holds a run (``--force``): the old run is renamed aside
  (``.<name>.old-<pid>``), the new one renamed into place, the old one deleted;
* ``--out`` is a directory without a run: the new files are moved into it.

On any error before or during the run the temporary directory is removed and
``--out`` is left as it was. An interrupted run (Ctrl-C) keeps what it wrote,
marked ``"interrupted": true``: in ``--out`` when there was no old run there,
otherwise beside the old run (which stays in place) as
``<out>.interrupted-<time>``.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

from ..errors import ConfigError, LearningChainError

__all__ = ["RunInterrupted", "RunDir", "check_out_dir", "holds_run", "in_run_dir", "default_out"]

#: A directory holding one of these holds a run.
RUN_MARKERS = ("chain.sqlite", "summary.json")


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by an interrupt after writing what it had: ``summary`` is
    its summary (``summary["out"]`` the directory holding it), ``kept`` the old
    run that stayed in ``--out`` (None when there was none)."""

    def __init__(self, summary: dict, kept: Optional[Path] = None):
        super().__init__(f"interrupted after {summary.get('rounds')} rounds; partial run in {summary.get('out')}")
        self.summary = summary
        self.kept = kept


def default_out(dataset: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return os.path.join("runs", f"{dataset}-{stamp}")


def holds_run(path: Path) -> bool:
    return path.is_dir() and any((path / name).exists() for name in RUN_MARKERS)


def _interrupted(path: Path) -> bool:
    try:
        return bool(json.loads((path / "summary.json").read_text()).get("interrupted"))
    except (OSError, ValueError, AttributeError):
        return not (path / "summary.json").exists()  # a chain without a summary: a run that never ended


def check_out_dir(out: Optional[str], dataset: str, *, force: bool) -> Path:
    """The run directory ``out`` names (default ``runs/<dataset>-<time>``), checked
    and not created: refused when it is not a directory, cannot be created, or
    holds a run and ``force`` is off."""
    path = Path(out if out is not None else default_out(dataset))
    if path.is_symlink():
        path = path.resolve()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path} is a file, not a directory")
    if holds_run(path):
        if not force:
            what = "an interrupted run" if _interrupted(path) else "a run"
            raise ConfigError(f"{path} already holds {what}; pass --force to replace it or choose another --out")
        here, where = Path.cwd().resolve(), path.resolve()
        if here == where or where in here.parents:
            raise ConfigError(f"--out {path} holds a run and is (or contains) the current directory, which "
                              f"--force cannot replace; choose another --out or run from elsewhere")
    anc = path.absolute().parent
    while not anc.exists():
        anc = anc.parent
    if not anc.is_dir():
        raise ConfigError(f"--out {path}: {anc} is not a directory")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {path}: cannot write in {anc}")
    return path


class RunDir:
    """The temporary directory ``path`` a run writes into, and its move to ``target``."""

    def __init__(self, target: Path):
        self.target = Path(target)  # as given (what the summary reports)
        self._abs = Path(os.path.abspath(self.target))  # "." and "x/.." have a name and a parent
        self.replaces = holds_run(self._abs)
        self._made: list = []
        parent = self._abs.parent
        missing = []
        while not parent.exists():
            missing.append(parent)
            parent = parent.parent
        try:
            for d in reversed(missing):
                d.mkdir()
                self._made.append(d)
            self.path = self._abs.parent / f".{self._abs.name}.new-{os.getpid()}"
            if self.path.exists():
                shutil.rmtree(self.path)  # left by a process of the same id that was killed
            self.path.mkdir()
        except OSError as exc:
            self._remove_parents()
            raise ConfigError(f"--out {self.target}: cannot create the run directory: "
                              f"{exc.strerror or exc}") from None

    source: Optional[Path] = None  # where an adopted run came from (see adopt)

    @classmethod
    def adopt(cls, source: Path, target: Path) -> "RunDir":
        """Take over the directory of an interrupted run (``--resume``): it becomes this
        process's temporary directory, moved to ``target`` when the run ends, and back
        to ``source`` if the resumed run fails, so nothing it holds is ever lost."""
        self = cls.__new__(cls)
        self.target = Path(target)
        self._abs = Path(os.path.abspath(self.target))
        self._made = []
        self.source = Path(os.path.abspath(source))
        self.path = self._abs.parent / f".{self._abs.name}.new-{os.getpid()}"
        try:
            os.rename(self.source, self.path)
        except OSError as exc:
            raise ConfigError(f"cannot take over {source}: {exc.strerror or exc}") from None
        self.replaces = holds_run(self._abs)
        return self

    def commit(self) -> Path:
        """Move the finished run to ``target``; returns ``target``."""
        target = self._abs
        if not target.exists():
            os.rename(self.path, target)
        elif self.replaces:
            old = target.parent / f".{target.name}.old-{os.getpid()}"
            if old.exists():
                shutil.rmtree(old)
            os.rename(target, old)
            try:
                os.rename(self.path, target)
            except BaseException:
                os.rename(old, target)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            for item in self.path.iterdir():
                os.replace(item, target / item.name)
            self.path.rmdir()
        return self.target

    def keep_interrupted(self) -> Path:
        """Keep an interrupted run: in ``target`` when no old run is there, else
        beside it as ``<target>.interrupted-<time>``. Returns where it is."""
        if not self.replaces:
            return self.commit()
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        name = f"{self._abs.name}.interrupted-{stamp}"
        n = 1
        while (self._abs.parent / name).exists():
            n += 1
            name = f"{self._abs.name}.interrupted-{stamp}-{n}"
        os.rename(self.path, self._abs.parent / name)
        return self.target.parent / name if self.target.name == self._abs.name else self._abs.parent / name

    def discard(self) -> None:
        if self.source is not None:  # an adopted run goes back where it was, as it was left
            os.rename(self.path, self.source)
            return
        shutil.rmtree(self.path, ignore_errors=True)
        self._remove_parents()

    def _remove_parents(self) -> None:
        for d in reversed(self._made):
            try:
                d.rmdir()
            except OSError:
                break
        self._made = []


def in_run_dir(target: Path, run: Callable[[Path], dict], *, rundir: Optional[RunDir] = None) -> dict:
    """``run(path)`` writes a run into a temporary directory and returns its summary;
    the directory is then moved to ``target`` (see the module's docstring). Raises
    :class:`RunInterrupted` when the summary says ``interrupted``. ``rundir``: an
    adopted directory (:meth:`RunDir.adopt`) instead of a new one."""
    rundir = RunDir(target) if rundir is None else rundir
    try:
        summary = run(rundir.path)
    except BaseException:
        rundir.discard()
        raise
    if summary.get("interrupted"):
        where = rundir.keep_interrupted()
        summary["out"] = str(where)
        raise RunInterrupted(summary, kept=rundir.target if rundir.replaces else None)
    try:
        summary["out"] = str(rundir.commit())
    except BaseException as exc:
        rundir.discard()
        if isinstance(exc, OSError):
            raise LearningChainError(f"could not move the finished run into {rundir.target}: "
                                     f"{exc.strerror or exc}") from None
        raise
    return summary
