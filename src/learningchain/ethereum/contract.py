"""The LearningChain contract: its source, its compiled artefact and its parameters.

The contract is compiled from ``contracts/learningchain.vy`` with Vyper 0.4.3
(offline). The compiled artefact ``contracts/learningchain.json`` is committed
beside it, so a run does not need the compiler; it records the keccak-256 of
the source it was built from, and a test recompiles the source and compares the
bytecode. Rebuild it after editing the source with::

    python -m learningchain.ethereum.contract --build
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..crypto import keccak256
from ..errors import ConfigError
from .fixedpoint import MAX_MESSAGES, FixedRule, words_for

__all__ = [
    "SOURCE_PATH",
    "ARTIFACT_PATH",
    "VYPER_VERSION",
    "compile_source",
    "build_artifact",
    "load_artifact",
    "read_artifact",
    "ContractParams",
    "MAX_CALL_BYTES",
    "max_chunk_words",
    "MAX_CHUNK_WORDS",
]

HERE = Path(__file__).resolve().parent
SOURCE_PATH = HERE / "contracts" / "learningchain.vy"
ARTIFACT_PATH = HERE / "contracts" / "learningchain.json"
VYPER_VERSION = "0.4.3"
#: Message words one aggregation call may carry (the contract's MAX_CALL_BYTES):
#: 64 KiB, half the largest transaction common Ethereum clients relay (the
#: contract pays memory for the whole bound on every call, so it is kept modest).
MAX_CALL_BYTES = 65536


#: The most words of a message one aggregation transaction takes (768 coordinates).
#: A chunk writes its coordinates into the second model buffer, fresh storage in the
#: first round (about 12,000 gas a coordinate); this cap keeps every aggregation
#: transaction under the 2^24 gas a transaction may use from Osaka on (EIP-7825).
MAX_CHUNK_WORDS = 96


def max_chunk_words(messages: int) -> int:
    """The most words of each message one aggregation call carries for ``messages``
    messages: each message's chunk follows two header words, all within MAX_CALL_BYTES,
    and at most MAX_CHUNK_WORDS."""
    return min(MAX_CALL_BYTES // (32 * messages) - 2, MAX_CHUNK_WORDS)


def _source_hash(source: str) -> str:
    return "0x" + keccak256(source.encode()).hex()


def compile_source(source: str | None = None, *, source_path: Path = SOURCE_PATH,
                   contract: str = "LearningChain") -> dict:
    """Compile a contract of contracts/ (by default the full one) with the installed Vyper
    (must be 0.4.3, Prague): abi and bytecode."""
    try:
        import vyper
    except ImportError as exc:  # pragma: no cover - the ethereum extra installs it
        raise ConfigError("compiling the contract needs vyper==0.4.3 (pip install 'learningchain[ethereum]')") \
            from exc
    if vyper.__version__ != VYPER_VERSION:
        raise ConfigError(f"the contract is built with vyper {VYPER_VERSION}, found {vyper.__version__}")
    source = source_path.read_text() if source is None else source
    out = vyper.compile_code(source, output_formats=["abi", "bytecode", "bytecode_runtime"])
    return {
        "contract": contract,
        "compiler": f"vyper-{VYPER_VERSION}",
        "evm_version": "prague",
        "source": f"contracts/{source_path.name}",
        "source_keccak256": _source_hash(source),
        "abi": out["abi"],
        "bytecode": out["bytecode"],
        "bytecode_runtime": out["bytecode_runtime"],
    }


def build_artifact() -> Path:
    artifact = compile_source()
    ARTIFACT_PATH.write_text(json.dumps(artifact, indent=1) + "\n")
    return ARTIFACT_PATH


def read_artifact(artifact_path: Path, source_path: Path, module: str) -> dict:
    """A committed artefact; refuses one built from another source (``module`` rebuilds it)."""
    try:
        artifact = json.loads(artifact_path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{artifact_path} is missing; build it with python -m {module} --build") from None
    if artifact.get("source_keccak256") != _source_hash(source_path.read_text()):
        raise ConfigError(f"{artifact_path.name} was not built from the current {source_path.name}; rebuild it with "
                          f"python -m {module} --build")
    return artifact


@lru_cache(maxsize=1)
def load_artifact() -> dict:
    """The full contract's committed artefact."""
    return read_artifact(ARTIFACT_PATH, SOURCE_PATH, "learningchain.ethereum.contract")


@dataclass(frozen=True)
class ContractParams:
    """Constructor arguments: the protocol parameters in the contract's units."""

    rule: FixedRule
    min_messages: int
    max_messages: int
    chunk_words: int
    rounds: int
    reward: int  # wei per valid aggregation
    #: messages that let a round be aggregated at once (None: min_messages, no waiting)
    quorum: int | None = None
    #: blocks after which a round with min_messages may be aggregated short of the quorum
    window: int = 0
    #: wei the first chunk of a multi-chunk aggregation carries (lost if its claim is wrong
    #: or it is left unfinished)
    bond: int = 0

    @classmethod
    def from_params(cls, params, *, messages: int, rounds: int, reward: int,
                    chunk_words: int | None = None, quorum: int | None = None,
                    window: int = 0, bond: int = 0) -> "ContractParams":
        """``messages``: the most messages a round will carry (the K holders and any extra);
        ``quorum``: the messages that close a round at once (default: min_messages);
        ``window``: blocks after which min_messages suffice."""
        rule = FixedRule.from_params(params)
        if not 1 <= messages <= MAX_MESSAGES:
            raise ConfigError(f"the contract takes at most {MAX_MESSAGES} messages a round, the run needs {messages}")
        if messages > params.max_messages:
            # the computing node ranks with the native rule, exact only up to max_messages
            raise ConfigError(f"a round of {messages} messages exceeds the protocol's max_messages "
                              f"({params.max_messages}) for quant_bits={params.quant_bits}")
        words = words_for(params.dim)
        most = max_chunk_words(messages)
        cw = min(words, most) if chunk_words is None else chunk_words
        if not 1 <= cw <= min(words, most):
            raise ConfigError(f"chunk_words must be in 1..{min(words, most)} for d={params.dim} and "
                              f"{messages} messages, got {cw}")
        low = min(params.min_messages, messages)
        if quorum is not None and not low <= quorum <= messages:
            raise ConfigError(f"the quorum must be in {low}..{messages}, got {quorum}")
        if not 0 <= window < 2**32:
            raise ConfigError(f"the window must be in 0..2**32-1 blocks, got {window}")
        if bond < 0:
            raise ConfigError(f"the bond must be >= 0 wei, got {bond}")
        return cls(rule, low, messages, cw, rounds, int(reward), quorum, int(window), int(bond))

    @property
    def chunks(self) -> int:
        return math.ceil(words_for(self.rule.dim) / self.chunk_words)

    def constructor_args(self) -> list:
        r = self.rule
        return [r.dim, r.quant_bits, r.norm_tol_bits, r.l, r.batch_size, r.lr, r.lam, self.min_messages,
                self.max_messages, self.chunk_words, self.rounds, self.reward,
                self.min_messages if self.quorum is None else self.quorum, self.window, self.bond]


def _main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m learningchain.ethereum.contract",
                                description="build or check the compiled LearningChain contract")
    p.add_argument("--build", action="store_true", help=f"recompile {SOURCE_PATH.name} into {ARTIFACT_PATH.name}")
    p.add_argument("--check", action="store_true", help="recompile and compare with the committed artefact")
    args = p.parse_args(argv)
    if args.build:
        path = build_artifact()
        print(f"wrote {path} ({len(load_artifact.__wrapped__()['bytecode_runtime']) // 2 - 1} bytes of runtime code)")
    if args.check or not args.build:
        fresh = compile_source()
        committed = json.loads(ARTIFACT_PATH.read_text())
        same = all(fresh[k] == committed.get(k) for k in ("abi", "bytecode", "source_keccak256"))
        print("artefact matches the source" if same else "artefact differs from the source: rebuild it")
        return 0 if same else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
