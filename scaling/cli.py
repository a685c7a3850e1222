"""The `scaling` command line. It only parses arguments and calls library functions.

    scaling flops [--widths ...] [--depths ...]   parameter and FLOP table of a family
    scaling coordcheck EXPERIMENT.py [--widths ...]   activation/update sizes across widths (muP check)
    scaling train EXPERIMENT.py [--set k=v ...] [--out DIR]   one training run
    scaling demo [--budget tiny|small|medium]     a small sweep on CPU, fit, forecast, plots
    scaling sweep EXPERIMENT.py --out DIR [--worker i --workers n]   an IsoFLOP sweep
    scaling fit RESULTS [--budget C]              laws, intervals, backtest, forecast
    scaling fit TABLE --N col --D col --loss col [--C col] [--run col]   the same on any CSV/JSONL/parquet
    scaling plot RESULTS --out DIR                the figures
    scaling verify SWEEP_DIR [--budget C]          train the forecast's optimum and check it
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
    from scaling import experiment
    from scaling.config import RunConfig

    # unknown keys / bad values fail here, before any compile
    cfg = experiment.load(args.experiment, args.set, expect=RunConfig)
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
    import jax

    main = [p for p in result.points if p["branch"] is None]
    if main and jax.process_index() == 0:
        p = main[-1]
        print(f"finished: {result.steps} steps, {result.tokens} tokens, val_loss {p['val_loss']:.4f}, "
              f"val_bpb {p['val_bpb']:.4f}, {result.wall_s:.1f} s -> {result.out_dir}")
    return checkpoint.EXIT_OK


def cmd_coordcheck(args) -> int:
    from scaling import experiment
    from scaling.config import RunConfig

    cfg = experiment.load(args.experiment, args.set, expect=RunConfig)
    from scaling import coordcheck

    models = coordcheck.family(cfg.model, widths=args.widths, depths=args.depths)
    if not models:
        raise ValueError("--widths and --depths are both empty: give the sizes to compare")
    result = coordcheck.run(models, steps=args.steps, lr=args.lr if args.lr is not None else cfg.train.lr,
                            seeds=range(args.seeds), batch=cfg.train.global_batch_size, data=cfg.data)
    print(coordcheck.format_table(result))
    return 0


# --- sweep, fit, plot, demo ---------------------------------------------------------------


def cmd_sweep(args) -> int:
    from scaling import experiment, sweep

    cfg = experiment.load(args.experiment, args.set, expect=sweep.SweepConfig)
    if args.plan_only:
        import jax

        from scaling.sweep.throughput import measured_flops_per_s

        fps, source = measured_flops_per_s()
        runs = sweep.plan(cfg)
        print(sweep.format_plan(runs, flops_per_s=fps, source=source, devices=jax.device_count(),
                                device_kind=jax.devices()[0].device_kind))
        sweep.check_repeats(runs, cfg.max_epochs)  # the plan is shown, then why it would not start
        return 0
    if args.distributed or args.coordinator is not None:
        from scaling.checkpoint import initialize_distributed

        initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    from scaling import checkpoint, paths, pipeline
    from scaling.sweep.run import run_sweep

    res = run_sweep(cfg, args.out, worker=args.worker, workers=args.workers, per_host=args.per_host)
    if res.preempted:
        return checkpoint.EXIT_PREEMPTED
    if res.done and not args.no_fit:
        pipeline.summarize(args.out, budget=args.budget, n_bootstrap=args.bootstrap,
                           plot_dir=paths.join(args.out, "plots"))
    return checkpoint.EXIT_OK


def _columns(args) -> dict | None:
    """--N/--D/--loss[/--C/--run]: the columns of a table that is not a sweep's results."""
    given = {k: getattr(args, k) for k in ("N", "D", "loss", "C", "run") if getattr(args, k) is not None}
    if not given:
        if str(args.results).lower().endswith((".csv", ".tsv", ".parquet")):
            raise ValueError(f"results={args.results!r}: not a sweep table; name its columns with --N, --D and --loss "
                             "(and --C, --run if it has them)")
        return None
    missing = [k for k in ("N", "D", "loss") if k not in given]
    if missing:
        raise ValueError(f"--{missing[0]}: required with {', '.join('--' + k for k in given)} (a table needs --N, "
                         "--D and --loss)")
    return given


def cmd_fit(args) -> int:
    from scaling import pipeline

    pipeline.summarize(args.results, budget=args.budget, n_bootstrap=args.bootstrap, metric=args.metric,
                       columns=_columns(args))
    return 0


def cmd_plot(args) -> int:
    from scaling import pipeline

    pipeline.summarize(args.results, budget=args.budget, n_bootstrap=args.bootstrap, metric=args.metric,
                     plot_dir=args.out, write=False)
    return 0


def cmd_demo(args) -> int:
    from scaling import pipeline

    done = pipeline.demo(args.budget, args.out, forecast_budget=args.forecast, verify_forecast=args.verify)
    return 0 if done is not None else 75


def cmd_verify(args) -> int:
    from scaling import pipeline

    return 0 if pipeline.verify(args.sweep_dir, budget=args.budget, n_bootstrap=args.bootstrap) is not None else 75


def _add_sweep_commands(sub) -> None:
    p = sub.add_parser("sweep", help="an IsoFLOP sweep from an experiment file (resumable; splits across workers)",
                       description="Plans, prints and runs the sweep into OUT (runs/<id>/, results.jsonl), then "
                                   "fits and plots when every run has its row (OUT/DONE). Exit codes: 0, "
                                   "2 bad arguments, 75 preempted (rerun the same command to continue).")
    p.add_argument("experiment", help="experiments/<name>.py with get_config() -> SweepConfig")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a SweepConfig field, e.g. --set budgets=(1e12,1e13) --set train.lr=1e-3")
    p.add_argument("--out", required=False, default="sweeps/sweep", help="sweep dir, local or gs://")
    p.add_argument("--worker", type=int, default=0, help="this worker's index (runs worker::workers)")
    p.add_argument("--workers", type=int, default=1, help="independent workers sharing the sweep dir")
    p.add_argument("--per-host", action="store_true",
                   help="multi-host: each host trains its own runs on its local devices")
    p.add_argument("--plan-only", action="store_true", help="print the plan and exit")
    p.add_argument("--no-fit", action="store_true", help="do not fit/plot at the end")
    p.add_argument("--budget", type=float, default=None, help="forecast budget in FLOPs (default 10x the largest)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates")
    p.add_argument("--distributed", action="store_true", help="jax.distributed.initialize()")
    p.add_argument("--coordinator", default=None, metavar="HOST:PORT")
    p.add_argument("--num-processes", type=int, default=None)
    p.add_argument("--process-id", type=int, default=None)
    p.set_defaults(func=cmd_sweep)

    for name, fn, helptext in (("fit", cmd_fit, "fit approach 2 and 3 to a results table and forecast"),
                               ("plot", cmd_plot, "figures of a results table (PNG)")):
        p = sub.add_parser(name, help=helptext,
                           description="RESULTS: a sweep dir or its results.jsonl, or any CSV/TSV, JSONL or parquet "
                                       "table with --N, --D, --loss (and --C, --run) naming its columns. "
                                       "`fit` writes report.txt and report.json beside the table.")
        p.add_argument("results", help="a sweep dir or its results.jsonl, or a table file (local or gs://)")
        for flag, what in (("N", "parameters"), ("D", "training tokens"), ("loss", "loss to fit"),
                           ("C", "training FLOPs (optional: default 6ND; equal C = one IsoFLOP budget)"),
                           ("run", "run id (optional: a run's rows are its evaluations; its last one is fitted)")):
            p.add_argument(f"--{flag}", default=None, metavar="COLUMN", help=f"table column: {what}")
        p.add_argument("--budget", type=float, default=None, help="forecast budget in FLOPs (default 10x the largest)")
        p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates")
        p.add_argument("--metric", default="val_loss", help="loss column to fit (val_loss, val_bpb, train_loss)")
        if name == "plot":
            p.add_argument("--out", required=True, help="directory for the PNGs")
        p.set_defaults(func=fn)

    p = sub.add_parser("demo", help="a small sweep on CPU, then fit, forecast and plot (start here)")
    p.add_argument("--budget", default="small", choices=["tiny", "small", "medium"],
                   help="tiny: ~1-2 min (CI); small: <= 10 min (default); medium: longer, a better law")
    p.add_argument("--out", default="scaling_demo", help="output dir (a subdir per budget; rerun resumes)")
    p.add_argument("--forecast", type=float, default=None, help="forecast budget in FLOPs (default 10x the largest)")
    p.add_argument("--verify", action="store_true",
                   help="then train the forecast budget's optimal size and neighbours and check the forecast")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("verify", help="train a sweep's forecast (N_opt and neighbours) and check it",
                       description="Trains, with the sweep's own recipe (SWEEP_DIR/sweep.json), the forecast's "
                                   "compute-optimal model and one size step each side at the budget, then prints "
                                   "and stores (report.json: verification) forecast vs measured. Resumable; "
                                   "exit 75 when preempted.")
    p.add_argument("sweep_dir", help="a finished sweep directory (local or gs://)")
    p.add_argument("--budget", type=float, default=None,
                   help="FLOPs (default: the report.json forecast's budget, else 10x the largest run)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates of the forecast's interval")
    p.set_defaults(func=cmd_verify)


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

    p = sub.add_parser("coordcheck", help="coordinate check: layer output sizes over the first steps across widths",
                       description="Trains the experiment's model at each width (or depth) for a few steps at "
                                   "one learning rate and prints the RMS of every layer's output and of its "
                                   "change since init, with the spread across sizes (Yang et al. 2022, TP5): "
                                   "flat under muP, growing under SP.")
    p.add_argument("experiment", help="experiments/<name>.py with get_config() -> RunConfig")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    p.add_argument("--widths", type=_ints, default=[32, 64, 128, 256, 512])
    p.add_argument("--depths", type=_ints, default=[], help="compare depths (n_layers) instead of / besides widths")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--lr", type=float, default=None, help="default: the experiment's train.lr")
    p.add_argument("--seeds", type=int, default=3)
    p.set_defaults(func=cmd_coordcheck)
    _add_sweep_commands(sub)
    return parser


def enable_compilation_cache() -> None:
    """JAX's persistent compilation cache for CLI runs: a second process (a resumed run, the
    next sweep worker, a rerun of the demo) reloads compiled steps instead of recompiling
    (measured 2.7x faster step compilation, bench/compile_cache.py). Set SCALING_JAX_CACHE to
    move it, or to an empty string to turn it off."""
    import os

    cache_dir = os.environ.get("SCALING_JAX_CACHE", os.path.expanduser("~/.cache/scaling/jax"))
    if not cache_dir:
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("train", "sweep", "demo", "verify"):
        enable_compilation_cache()
    try:
        return args.func(args)
    except ValueError as e:  # bad input: one clear line, no traceback
        print(f"scaling {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
