"""``python -m learningchain.flower verify LOG_DIR``: replay a Flower run log (exit 0 valid, 1 invalid, 2 usage)."""

import argparse
import sys

from ..errors import LearningChainError
from .log import verify_log


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m learningchain.flower", allow_abbrev=False,
                                     description="Replay the log a ChainRule strategy wrote.")
    sub = parser.add_subparsers(dest="command", required=True)
    verify = sub.add_parser("verify", help="recompute every round's selection and model from the log")
    verify.add_argument("log_dir", help="the strategy's log_dir")
    args = parser.parse_args(argv)
    try:
        verdict = verify_log(args.log_dir)
    except LearningChainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(verdict)
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
