"""The `scaling` command line. It only parses arguments and calls library functions.

    scaling flops [--widths ...] [--depths ...]   parameter and FLOP table of a family
"""

from __future__ import annotations

import argparse
import sys


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None


def cmd_flops(args) -> int:
    from scaling import family

    configs = family.grid(args.widths, args.depths, head_dim=args.head_dim, vocab_size=args.vocab_size,
                          seq_len=args.seq_len, loops=args.loops)
    print(family.table(configs, method=args.method))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scaling", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("flops", help="parameter and FLOP table of a widths x depths family")
    p.add_argument("--widths", type=_ints, default=[128, 256, 512, 1024])
    p.add_argument("--depths", type=_ints, default=[4, 8, 12])
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--vocab-size", type=int, default=256)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--loops", type=int, default=1)
    p.add_argument("--method", default="chinchilla", choices=["6n", "kaplan", "chinchilla", "palm"])
    p.set_defaults(func=cmd_flops)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as e:  # bad input: one clear line, no traceback
        print(f"scaling {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
