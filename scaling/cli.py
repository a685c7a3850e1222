"""The `scaling` command line. It only parses arguments and calls library functions.

    scaling flops [--widths ...] [--depths ...]   parameter and FLOP table of a family
    scaling train EXPERIMENT.py [--set k=v ...] [--out DIR]   one training run
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


def cmd_train(args) -> int:
    from scaling.config import RunConfig, load_experiment, override

    cfg = load_experiment(args.experiment)
    if not isinstance(cfg, RunConfig):
        raise ValueError(f"experiment={args.experiment!r}: get_config() must return a RunConfig, "
                         f"got {type(cfg).__name__}")
    cfg = override(cfg, args.set)  # unknown keys / bad values fail here, before any compile
    if args.distributed or args.coordinator is not None:
        from scaling.checkpoint import initialize_distributed

        initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    from scaling import checkpoint, train

    result = train.run(cfg, args.out or f"runs/{cfg.name}")
    if result.status == "preempted":
        return checkpoint.EXIT_PREEMPTED
    if result.status == "diverged":
        print(f"scaling train: {result.message}", file=sys.stderr)
        return checkpoint.EXIT_DIVERGED
    main = [p for p in result.points if p["branch"] is None]
    if main:
        p = main[-1]
        print(f"finished: {result.steps} steps, {result.tokens} tokens, val_loss {p['val_loss']:.4f}, "
              f"val_bpb {p['val_bpb']:.4f}, {result.wall_s:.1f} s -> {result.out_dir}")
    return checkpoint.EXIT_OK


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

    p = sub.add_parser("train", help="one training run from an experiment file (resumes if interrupted)",
                       description="Exit codes: 0 finished, 2 bad arguments, 3 diverged, 75 preempted "
                                   "(SIGTERM: state saved, rerun the same command to continue).")
    p.add_argument("experiment", help="experiments/<name>.py with get_config() -> RunConfig")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set train.lr=3e-4 (repeatable)")
    p.add_argument("--out", default=None, help="output dir, local or gs:// (default runs/<name>)")
    p.add_argument("--distributed", action="store_true",
                   help="jax.distributed.initialize() (auto-detected on TPU VMs / SLURM)")
    p.add_argument("--coordinator", default=None, metavar="HOST:PORT")
    p.add_argument("--num-processes", type=int, default=None)
    p.add_argument("--process-id", type=int, default=None)
    p.set_defaults(func=cmd_train)
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
