"""The ``jaxlab`` command: a thin shell over the Python API.

    jaxlab list
    jaxlab train EXPERIMENT[:preset] --workdir DIR [--config.a.b=value ...] [--quiet]
    jaxlab eval WORKDIR
    jaxlab report WORKDIR

Exit status: 0 done; 2 bad input or a refused workdir (unknown experiment, malformed preset,
unknown or mistyped override, a workdir of another config or in use, ...: one ``jaxlab: error:``
line, nothing written); 3 the loss or gradients became NaN/Inf (the last good checkpoint is kept);
75 stopped by SIGTERM/SIGINT after committing a checkpoint (run the same command to resume).
"""
import argparse
import json
import sys
import warnings

USAGE_ERROR = 2
NONFINITE = 3
INTERRUPTED = 75  # EX_TEMPFAIL (sysexits.h): a temporary failure, run again to continue


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
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="print the experiment registry")
    train = commands.add_parser("train", help="train an experiment (resumes its workdir)",
                                epilog="Overrides: --config.KEY=VALUE, typed like the default.")
    train.add_argument("experiment", help="NAME, NAME:preset, or path/to/file.py[:preset]")
    train.add_argument("--workdir", required=True)
    train.add_argument("--quiet", action="store_true", help="no progress bar or summary line")
    train.add_argument("--allow-config-change", action="store_true",
                       help="resume a workdir whose config differs from this one (listed as a "
                            "warning), e.g. to continue with a longer schedule")
    evaluate = commands.add_parser("eval", help="evaluate a workdir's newest checkpoint")
    evaluate.add_argument("workdir")
    report = commands.add_parser("report", help="table of final metrics and a PNG of the curves")
    report.add_argument("workdir")
    return parser


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = _one_line_warning
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    # Imported here so that `jaxlab --help` answers without loading JAX.
    from jaxlab import registry
    from jaxlab.errors import Interrupted, NonFiniteError, UserError
    from jaxlab.report import report
    from jaxlab.train import evaluate_workdir, train

    try:
        if args.command != "train" and extra:
            raise UserError(f"unrecognised arguments: {' '.join(extra)}")
        if args.command == "list":
            for exp in registry.list_experiments(args.experiments_dir):
                preset = ",".join(f"{k}={v}" for k, v in exp.preset.items()) or "-"
                print(f"{exp.name:24s} {exp.description}\n{'':24s} preset: {preset}")
        elif args.command == "train":
            config = registry.load_config(args.experiment, _split_overrides(extra),
                                          args.experiments_dir)
            train(config, args.workdir, quiet=args.quiet,
                  allow_config_change=args.allow_config_change)
        elif args.command == "eval":
            print(json.dumps(evaluate_workdir(args.workdir)))
        elif args.command == "report":
            print(report(args.workdir))
    except UserError as error:
        print(f"jaxlab: error: {error}", file=sys.stderr)
        return USAGE_ERROR
    except NonFiniteError as error:
        print(f"jaxlab: error: {error}", file=sys.stderr)
        return NONFINITE
    except Interrupted as stopped:
        print(f"jaxlab: {stopped}", file=sys.stderr)
        return INTERRUPTED
    return 0


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    del category, filename, lineno, line
    return f"jaxlab: warning: {message}\n"


if __name__ == "__main__":
    sys.exit(main())
