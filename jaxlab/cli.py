"""The ``jaxlab`` command: a thin shell over the Python API.

    jaxlab list
    jaxlab train EXPERIMENT[:preset] --workdir DIR [--config.a.b=value ...] [--quiet]
    jaxlab eval WORKDIR
    jaxlab report WORKDIR

Bad input (unknown experiment, malformed preset, unknown or mistyped override, ...) prints one
``jaxlab: error: ...`` line and exits with status 2, having written nothing.
"""
import argparse
import json
import sys

USAGE_ERROR = 2


def _split_overrides(extra: list[str]) -> dict[str, str]:
    """``--config.a.b=v`` / ``--config.a.b v`` pairs -> {"a.b": "v"}; anything else is an error."""
    from jaxlab.errors import UserError

    overrides, items = {}, list(extra)
    while items:
        item = items.pop(0)
        if not item.startswith("--config."):
            raise UserError(f"unrecognised argument {item!r}; overrides look like "
                            f"--config.train.steps=500")
        key, sep, value = item[2:].partition("=")
        if not sep:
            if not items:
                raise UserError(f"override {item!r} has no value; write {item}=VALUE")
            value = items.pop(0)
        overrides[key.removeprefix("config.")] = value
    return overrides


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxlab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments-dir", action="append", default=[],
                        help="extra directory of experiment files (repeatable; also "
                             "$JAXLAB_EXPERIMENTS, os.pathsep-separated)")
    multihost = argparse.ArgumentParser(add_help=False)
    group = multihost.add_argument_group("multi-process runs (every process runs the same command)")
    group.add_argument("--coordinator-address", help="host:port of process 0")
    group.add_argument("--num-processes", type=int)
    group.add_argument("--process-id", type=int)
    group.add_argument("--distributed", action="store_true",
                       help="auto-detect the processes (TPU pod slices, SLURM)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="print the experiment registry")
    train = commands.add_parser("train", help="train an experiment (resumes its workdir)",
                                parents=[multihost],
                                epilog="Overrides: --config.KEY=VALUE, typed like the default.")
    train.add_argument("experiment", help="NAME, NAME:preset, or path/to/file.py[:preset]")
    train.add_argument("--workdir", required=True)
    train.add_argument("--quiet", action="store_true", help="no progress bar or summary line")
    evaluate = commands.add_parser("eval", help="evaluate a workdir's newest checkpoint",
                                   parents=[multihost])
    evaluate.add_argument("workdir")
    report = commands.add_parser("report", help="table of final metrics and a PNG of the curves")
    report.add_argument("workdir")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    # Imported here so that `jaxlab --help` answers without loading JAX.
    import jax

    from jaxlab import compilation_cache, parallel, registry
    from jaxlab.errors import UserError
    from jaxlab.report import report
    from jaxlab.train import evaluate_workdir, train

    try:
        if args.command != "train" and extra:
            raise UserError(f"unrecognised arguments: {' '.join(extra)}")
        if args.command in ("train", "eval"):
            compilation_cache.enable()
            parallel.initialize_distributed(args.coordinator_address, args.num_processes,
                                            args.process_id, auto=args.distributed)
        if args.command == "list":
            for exp in registry.list_experiments(args.experiments_dir):
                preset = ",".join(f"{k}={v}" for k, v in exp.preset.items()) or "-"
                print(f"{exp.name:24s} {exp.description}\n{'':24s} preset: {preset}")
        elif args.command == "train":
            config = registry.load_config(args.experiment, _split_overrides(extra),
                                          args.experiments_dir)
            train(config, args.workdir, quiet=args.quiet)
        elif args.command == "eval":
            metrics = evaluate_workdir(args.workdir)
            if jax.process_index() == 0:
                print(json.dumps(metrics))
        elif args.command == "report":
            print(report(args.workdir))
    except UserError as error:
        print(f"jaxlab: error: {error}", file=sys.stderr)
        return USAGE_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
