"""Record tests/vectors/chains/*.chain: the canonical blocks of the seeded runs of
tests/test_head_pins.py, as one machine's holders computed them.

A seeded run's head depends on the holders' float gradients, which differ in their
last bits between machines; consensus never recomputes them: a node validates a
block by replaying its messages in exact integer arithmetic. So a chain recorded
on one machine must be accepted, block by block, with the same head on every
machine, whatever its float kernels: tests/protocol/test_recorded_chains.py
replays these files through a fresh node and ``chain verify``.

File format: zstd over the concatenation of ``u32 little-endian length ||
block.encode()`` for heights 0 (genesis) to head.

Run ``python tests/vectors/make_recorded_chains.py`` to rewrite the files; the
tests read them and never regenerate them.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import zstandard

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from learningchain.config import TrainConfig  # noqa: E402
from learningchain.experiments.train import run_training  # noqa: E402
from learningchain.node.store import open_readonly  # noqa: E402
from tests.test_head_pins import RUNS  # noqa: E402


def record(name: str, options: dict, out_dir: Path) -> tuple[str, int]:
    with tempfile.TemporaryDirectory() as tmp:
        summary = run_training(TrainConfig(out=str(Path(tmp) / "run"), force=True, progress=False, **options))
        store = open_readonly(Path(tmp) / "run" / "chain.sqlite")
        try:
            raw = b"".join(len(e).to_bytes(4, "little") + e for e in (b.encode() for b in store.canonical_blocks()))
        finally:
            store.close()
    (out_dir / f"{name}.chain").write_bytes(zstandard.ZstdCompressor(level=19).compress(raw))
    return summary["head_hash"], len(raw)


def main() -> None:
    out_dir = HERE / "chains"
    out_dir.mkdir(exist_ok=True)
    for name, (options, _) in sorted(RUNS.items()):
        head, size = record(name, options, out_dir)
        print(f"{name}: head {head}, {size:,} bytes")


if __name__ == "__main__":
    main()
