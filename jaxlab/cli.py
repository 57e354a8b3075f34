"""The ``jaxlab`` command: a thin shell over the Python API.

Its subcommands are ``list``, ``config``, ``inspect``, ``train``, ``eval``, ``export``, ``sweep``,
``report``, ``compare`` and ``data convert``;
`main` runs one and returns its exit status, and `console` is the installed entry point.
"""

import argparse
import atexit
import collections
import json
import logging
import os
import sys
import threading
import warnings

from jaxlab.errors import INTERRUPTED, NONFINITE, STORAGE_ERROR, SWEEP_INCOMPLETE, USAGE_ERROR


def _split_overrides(extra: list[str]) -> dict[str, str]:
    """``--config.a.b=v`` / ``--config.a.b v`` pairs -> {"a.b": "v"}; anything else is an error."""
    from jaxlab.errors import UserError

    overrides, items = {}, list(extra)
    while items:
        item = items.pop(0)
        if not item.startswith("--config."):
            raise UserError(
                f"unrecognised argument {item!r}; overrides look like --config.train.steps=500"
            )
        key, sep, value = item[2:].partition("=")
        if not sep:
            if not items:
                raise UserError(f"override {item!r} has no value; write {item}=VALUE")
            value = items.pop(0)
        overrides[key.removeprefix("config.")] = value
    return overrides


def _sweep(args: argparse.Namespace, overrides: dict[str, str]) -> int:
    """Runs the sweep; its exit status: 0 when every run is done, else `SWEEP_INCOMPLETE`."""
    from jaxlab.errors import UserError
    from jaxlab.rundir.workdir import RESULTS_MD
    from jaxlab.sweep import DONE, STOPPED, command_line_points, experiment_points, sweep
    from jaxlab.sweep.halving import Halving
    from jaxlab.sweep.pbt import PopulationBasedTraining

    experiment = _experiment(args)
    if args.search == "optuna":
        return _optuna_search(args, experiment, overrides)
    if args.search != "grid":
        raise UserError(f"--search must be grid or optuna, got {args.search!r}")
    if args.study:
        raise UserError("--study is the study of --search optuna; add --search optuna")
    if args.sweep or args.zip:
        points = command_line_points(args.sweep, args.zip, args.samples, args.search_seed)
    elif args.samples:
        raise UserError("--samples draws from the spaces of --sweep; there is no --sweep")
    else:
        points = experiment_points(experiment, args.experiments_dir)
    scheduler: Halving | PopulationBasedTraining | None = None
    if args.scheduler in ("halving", "asha"):
        scheduler = Halving(
            args.min_steps, args.reduction, args.metric, args.mode, args.scheduler == "asha"
        )
    elif args.scheduler == "pbt":
        scheduler = PopulationBasedTraining(
            args.interval, args.metric, args.mode, args.fraction, args.search_seed
        )
    elif args.scheduler != "none":
        raise UserError(f"--scheduler must be none, halving, asha or pbt, got {args.scheduler!r}")
    rows = sweep(
        experiment,
        points,
        args.workdir,
        scheduler=scheduler,
        parallel=args.parallel,
        vmap=args.vmap,
        group_memory=_size(args.group_memory),
        backend=args.backend,
        address=args.address,
        fixed_overrides=overrides,
        extra_dirs=args.experiments_dir,
        quiet=False,
    )
    counts = collections.Counter(row["status"] for row in rows)
    shown = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    print(
        f"jaxlab sweep: {len(rows)} runs: {shown}; results in {args.workdir}/{RESULTS_MD}",
        flush=True,
    )
    return 0 if counts[DONE] + counts[STOPPED] == len(rows) else SWEEP_INCOMPLETE


SIZE_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "ki": 2**10, "mi": 2**20, "gi": 2**30}


def _size(text: str | None) -> int | None:
    """Bytes of a size like ``512MiB``, ``2GiB``, ``1.5GB`` or ``1000000`` (None stays None)."""
    import re

    from jaxlab.errors import UserError

    if text is None:
        return None
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmg]i?)?b?\s*", text.lower())
    if match is None:
        raise UserError(f"--group-memory must be a size like 512MiB, 2GiB or 1.5GB, got {text!r}")
    return int(float(match[1]) * SIZE_UNITS[match[2] or ""])


def _optuna_search(args: argparse.Namespace, experiment: str, overrides: dict[str, str]) -> int:
    """``jaxlab sweep --search optuna``: the runs Optuna asks for (`jaxlab.sweep.optuna_search`)."""
    from jaxlab import paths
    from jaxlab.errors import UserError
    from jaxlab.sweep import DONE, STOPPED, plan, space, sweep
    from jaxlab.sweep.halving import Halving
    from jaxlab.sweep.optuna_search import require_optuna, search
    from jaxlab.sweep.plan import key_and_values

    require_optuna()
    listed, spaces = space.split([key_and_values(text) for text in args.sweep])
    if listed or args.zip or args.scheduler not in ("none", "halving"):
        raise UserError(
            "--search optuna takes sampled spaces only (--sweep 'config.KEY=loguniform(a,b)'), "
            "without listed values, --zip or a --scheduler other than halving"
        )
    halving = None
    if args.scheduler == "halving":
        halving = Halving(args.min_steps, args.reduction, args.metric, args.mode)
    (base,) = plan(experiment, [{}], overrides, args.experiments_dir)  # the runs' length
    options = dict(
        scheduler=halving,
        vmap=args.vmap,
        group_memory=_size(args.group_memory),
        parallel=args.parallel,
        fixed_overrides=overrides,
        extra_dirs=args.experiments_dir,
        quiet=False,
    )
    rows = search(
        spaces,
        paths.path(args.workdir, "sweep directory"),
        lambda points: sweep(experiment, points, args.workdir, **options),
        samples=args.samples,
        batch=args.batch,
        metric=args.metric,
        mode=args.mode,
        seed=args.search_seed,
        sampler=args.sampler,
        run_name=lambda point: plan(experiment, [point], overrides, args.experiments_dir)[0].name,
        rungs=halving.rungs(base.config.train.steps) if halving else (),
        study_file=_study_file(args.study),
    )
    done = sum(row["status"] == DONE for row in rows)
    stopped = sum(row["status"] == STOPPED for row in rows)
    pruned = f", {stopped} stopped at a rung" if halving else ""
    print(f"jaxlab sweep: optuna: {len(rows)} runs, {done} done{pruned}; results in {args.workdir}")
    whole = args.study or len(rows) == args.samples  # a shared study's runs are in others too
    return 0 if done + stopped == len(rows) and whole else SWEEP_INCOMPLETE


def _study_file(text: str | None):
    """The local path of ``--study``; `UserError` unless its directory exists."""
    from jaxlab import paths
    from jaxlab.errors import UserError

    if text is None:
        return None
    path = paths.path(text, "--study file")
    if paths.is_remote(path) or not path.parent.is_dir():
        raise UserError(
            f"--study {text}: expected an SQLite file on a local or mounted file system, in a "
            f"directory that exists"
        )
    return path


def _convert(args: argparse.Namespace) -> None:
    from jaxlab.data.convert import convert

    lines = convert(
        args.source,
        args.destination,
        kind=args.kind,
        fmt=args.format,
        test=args.test,
        test_fraction=args.test_fraction,
        split_seed=args.split_seed,
    )
    suffix = ".array_record" if args.format == "array_record" else ""
    print(
        "\n".join(
            [
                f"jaxlab data: wrote {args.destination}",
                *lines,
                f'use: config.data = dict(loader="jaxlab.data.arrays:load", '
                f'train="{args.destination}/train{suffix}", '
                f'test="{args.destination}/test{suffix}")',
            ]
        )
    )


def _experiment_arguments(command: argparse.ArgumentParser) -> None:
    """The experiment, positional or as ``--config=SPEC`` (ml_collections ``config_flags``)."""
    command.add_argument(
        "experiment", nargs="?", help="NAME, NAME:preset, or path/to/file.py[:preset]"
    )
    command.add_argument(
        "--config",
        dest="config_spec",
        metavar="SPEC",
        help="the experiment, as ml_collections' config_flags users write it: "
        "--config=path/to/exp.py[:preset] (same as the positional form)",
    )


def _experiment(args: argparse.Namespace) -> str:
    from jaxlab.errors import UserError

    if (args.experiment is None) == (args.config_spec is None):
        raise UserError(
            "name the experiment once: jaxlab train NAME[:preset] ... or jaxlab "
            "train --config=path/to/exp.py[:preset] ..."
        )
    return args.experiment or args.config_spec


def _inspected_config(spec: str, overrides: dict[str, str], extra_dirs: list[str]):
    """The validated config of an experiment ``spec``, or of the run in the workdir ``spec``."""
    import pathlib

    from jaxlab.config import registry, run_config
    from jaxlab.rundir import workdir

    if pathlib.Path(spec, workdir.CONFIG_FILE).is_file():
        return run_config.validate(workdir.read_config(pathlib.Path(spec)), overrides)
    return registry.load_config(spec, overrides, extra_dirs)


EXAMPLES = """examples:
  jaxlab list                                    the experiments, with their presets
  jaxlab config mlp_moons                        every key one may override, typed
  jaxlab train mlp_moons --workdir runs/moons --config.train.steps=500
  jaxlab train my_exp.py:smoke --workdir runs/a  an experiment file of your own, a preset
  jaxlab eval runs/moons                         the newest checkpoint on the test split
  jaxlab export runs/moons --output served/moons the model for JAX alone (jax.export)
  jaxlab report runs/moons                       final metrics, curves in metrics.png
  jaxlab sweep mlp_moons --workdir runs/lr --vmap \\
      --sweep config.optimizer.learning_rate=1e-3,1e-2 --sweep config.seed=0,1,2
  jaxlab compare runs/moons runs/lr              config differences, curves overlaid
  jaxlab inspect mlp_moons                       parameters, FLOPs, memory, compile time

Each command has its own help: jaxlab train --help. Exit status: 0 done, 2 bad input (one
line on stderr), 3 diverged (NaN/Inf), 4 a sweep with failed runs, 74 a storage error, 75
stopped by a signal (run the same command again to resume)."""


def _version() -> str:
    """The installed distribution's version (without importing jaxlab, so JAX, first)."""
    import importlib.metadata

    return importlib.metadata.version("jaxlab")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxlab",
        description="Train, sweep, inspect and compare JAX experiments; every run resumes.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    registry_dirs = argparse.ArgumentParser(add_help=False)
    registry_dirs.add_argument(
        "--experiments-dir",
        action="append",
        default=[],
        help="a directory of your experiment files, searched before the "
        "built-ins (repeatable; also $JAXLAB_EXPERIMENTS, "
        "os.pathsep-separated)",
    )
    multihost = argparse.ArgumentParser(add_help=False)
    group = multihost.add_argument_group("multi-process runs (every process runs the same command)")
    group.add_argument("--coordinator-address", help="host:port of process 0")
    group.add_argument("--num-processes", type=int)
    group.add_argument("--process-id", type=int)
    group.add_argument(
        "--distributed",
        action="store_true",
        help="auto-detect the processes (TPU pod slices, SLURM)",
    )
    group.add_argument(
        "--heartbeat-timeout",
        type=int,
        metavar="SECONDS",
        help="end the run this long after a process stops answering (JAX's "
        "default: 100; also $JAXLAB_HEARTBEAT_TIMEOUT)",
    )
    parser.add_argument("--version", action="version", version=f"jaxlab {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="print the experiment registry", parents=[registry_dirs])
    show_config = commands.add_parser(
        "config",
        help="print the resolved config: every key one may override, with its value and type",
        parents=[registry_dirs],
        epilog="Overrides: --config.KEY=VALUE. Each line printed is such an override.",
    )
    _experiment_arguments(show_config)
    inspect = commands.add_parser(
        "inspect",
        help="parameters, FLOPs per step, memory per device and compile time of a run",
        parents=[registry_dirs],
        epilog="SPEC is an experiment (NAME[:preset], path.py[:preset]) or a workdir. "
        "Overrides: --config.KEY=VALUE (e.g. --config.mesh.fsdp=8).",
    )
    inspect.add_argument("spec", metavar="SPEC|WORKDIR")
    train = commands.add_parser(
        "train",
        help="train an experiment (resumes its workdir)",
        parents=[multihost, registry_dirs],
        epilog="Overrides: --config.KEY=VALUE, typed like the default.",
    )
    _experiment_arguments(train)
    train.add_argument("--workdir", required=True)
    train.add_argument("--quiet", action="store_true", help="no progress bar or summary line")
    train.add_argument(
        "--allow-config-change",
        action="store_true",
        help="resume a workdir whose config differs from this one (listed as a "
        "warning), e.g. to continue with a longer schedule",
    )
    evaluate = commands.add_parser(
        "eval",
        help="evaluate a checkpoint of a workdir, on its test split or on other data",
        parents=[multihost],
        epilog="Other data: overrides of the data section, e.g. --config.data.test=new.npz "
        "(other keys are refused).",
    )
    evaluate.add_argument("workdir")
    evaluate.add_argument("--step", type=int, help="the checkpoint's step (default: the newest)")
    evaluate.add_argument("--output", help="also write the metrics to this JSON file")
    sweep = commands.add_parser(
        "sweep",
        help="train many runs of an experiment that differ in overrides",
        parents=[registry_dirs],
        epilog="Without --sweep/--zip, the experiment file's get_sweep(preset) gives the runs. "
        "Fixed overrides: --config.KEY=VALUE. See docs/sweeps.md.",
    )
    _experiment_arguments(sweep)
    sweep.add_argument("--workdir", required=True, help="the sweep's directory (one per run in it)")
    sweep.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="config.KEY=V1,V2",
        help="values of one key, or a space to sample: uniform(a,b), loguniform(a,b), "
        "intuniform(a,b), choice(v1,v2,...); several --sweep give their product",
    )
    sweep.add_argument(
        "--samples",
        type=int,
        default=0,
        help="how many runs to draw from the sampled spaces of --sweep",
    )
    sweep.add_argument(
        "--search-seed",
        type=int,
        default=0,
        help="the seed of those draws (default 0): the same command gives the same runs",
    )
    sweep.add_argument(
        "--zip",
        action="append",
        default=[],
        metavar="config.KEY=V1,V2",
        help="values that vary together with the other --zip keys",
    )
    sweep.add_argument("--parallel", type=int, default=1, help="runs at a time (default 1)")
    sweep.add_argument(
        "--vmap",
        action="store_true",
        help="train the runs as vmapped programs: runs differing in the seed and numeric leaves "
        "(learning rate, loss weights) as one, one program per value of any other key",
    )
    sweep.add_argument(
        "--group-memory",
        default=None,
        metavar="SIZE",
        help="--vmap: the most memory per device one program may take, e.g. 2GiB (default 90%% "
        "of a device's); more runs train as several programs, one after another",
    )
    sweep.add_argument(
        "--search",
        default="grid",
        help="grid (default: the listed and sampled runs) or optuna (Optuna asks for the runs "
        "from the sampled spaces, --batch at a time, until --samples; pip install "
        "'jaxlab[optuna]')",
    )
    sweep.add_argument("--batch", type=int, default=4, help="optuna: runs per round (4)")
    sweep.add_argument("--sampler", default="tpe", help="optuna: tpe (default) or random")
    sweep.add_argument(
        "--study",
        default=None,
        help="optuna: an SQLite file holding a study that several searches share, each in its "
        "own --workdir (default: the sweep directory's optuna.db)",
    )
    sweep.add_argument(
        "--scheduler",
        default="none",
        help="halving: successive halving of the runs; asha: its asynchronous variant, in "
        "worker processes; pbt: population-based training of the runs as one vmapped program "
        "(docs/sweeps.md); default none",
    )
    sweep.add_argument("--min-steps", type=int, default=0, help="halving, asha: the first rung")
    sweep.add_argument(
        "--reduction", type=int, default=3, help="halving, asha: keep 1/REDUCTION at each rung (3)"
    )
    sweep.add_argument("--interval", type=int, default=0, help="pbt: steps between two exploits")
    sweep.add_argument(
        "--fraction",
        type=float,
        default=0.2,
        help="pbt: the worst FRACTION of the runs take the state of the best as many (0.2)",
    )
    sweep.add_argument(
        "--metric", default="eval/loss", help="halving, asha, pbt, optuna: the metric (eval/loss)"
    )
    sweep.add_argument(
        "--mode", default="min", help="halving, asha, pbt, optuna: min (default) or max"
    )
    sweep.add_argument("--backend", default="local", choices=("local", "ray"))
    sweep.add_argument("--address", default=None, help="Ray cluster address (--backend ray)")
    data = commands.add_parser("data", help="data files for the Grain input path")
    convert = data.add_subparsers(dest="data_command", required=True).add_parser(
        "convert",
        help="write a dataset as the files the Grain input path streams",
        description="Writes SOURCE (a .npz / .npy file, a directory of .npy files, an "
        ".array_record file, or the MNIST / CIFAR-10 distribution's directory) as "
        "DESTINATION/train and DESTINATION/test.",
    )
    convert.add_argument("source")
    convert.add_argument("destination", help="a new directory")
    convert.add_argument(
        "--from", dest="kind", default="arrays", help="arrays (default), mnist or cifar10"
    )
    convert.add_argument("--format", default="npy", help="npy (default) or array_record")
    convert.add_argument("--test", default="", help="the test split's source (arrays)")
    convert.add_argument(
        "--test-fraction",
        type=float,
        default=0.0,
        help="or: this fraction of the source, drawn at random, as test split",
    )
    convert.add_argument("--split-seed", type=int, default=0)
    report = commands.add_parser(
        "report", help="table of final metrics and PNGs of a run or a sweep"
    )
    report.add_argument("workdir")
    report.add_argument(
        "--metric", default=None, help="sweep: the metric to sort and plot by (default eval/loss)"
    )
    report.add_argument("--descending", action="store_true", help="sweep: largest first")
    export = commands.add_parser(
        "export",
        help="write a checkpoint's prediction function (jax.export) and weights to a directory",
        epilog="Loading it needs only JAX: see the snippet in docs/extending.md, 'After training'.",
    )
    export.add_argument("workdir")
    export.add_argument("--output", required=True, help="a new directory")
    export.add_argument("--step", type=int, help="the checkpoint's step (default: the newest)")
    export.add_argument(
        "--platforms",
        default="",
        help="comma-separated, e.g. cpu,cuda,tpu (default: this machine's platform)",
    )
    compare = commands.add_parser(
        "compare",
        help="config differences and final metrics of runs (or sweeps) as a table, curves overlaid",
    )
    compare.add_argument("runs", nargs="+", metavar="RUN_OR_SWEEP")
    compare.add_argument(
        "--output", default="compare.png", help="the PNG of the curves (default: compare.png)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs one command; returns its exit status.

    ``train`` and ``sweep`` (in a single process) record SIGTERM/SIGINT from the start, those held
    pending while the command started included (`jaxlab.rundir.preemption`), and stop at the next
    chunk; the other commands take them as Python does (`console` makes Ctrl-C one line)."""
    warnings.formatwarning = _one_line_warning
    _quiet_background_errors()
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    from jaxlab.rundir import preemption

    if args.command in ("train", "sweep") and not _multi_process(args):
        with preemption.StopSignals():
            return _run(args, extra)
    preemption.unblock()
    return _run(args, extra)


def _multi_process(args: argparse.Namespace) -> bool:
    """Whether the command joins a multi-process run (JAX's preemption service takes SIGTERM)."""
    return bool(
        getattr(args, "coordinator_address", None)
        or getattr(args, "num_processes", None)
        or getattr(args, "distributed", False)
    )


def _run(args: argparse.Namespace, extra: list[str]) -> int:
    import jax

    from jaxlab import config as config_lib
    from jaxlab import parallel, paths
    from jaxlab.config import registry
    from jaxlab.errors import Interrupted, NonFiniteError, StorageError, UserError
    from jaxlab.loop import compilation_cache
    from jaxlab.loop.train import evaluate_workdir, train_validated

    try:
        if args.command not in ("train", "sweep", "config", "inspect", "eval") and extra:
            raise UserError(f"unrecognised arguments: {' '.join(extra)}")
        if args.command == "sweep" and args.vmap:
            parallel.cpu_device_per_core()  # the trials over the cores (jaxlab.sweep.trials)
        if args.command in ("train", "eval"):
            compilation_cache.enable()
            parallel.initialize_distributed(
                args.coordinator_address,
                args.num_processes,
                args.process_id,
                auto=args.distributed,
                heartbeat_timeout=args.heartbeat_timeout,
            )
        if args.command == "list":
            for exp in registry.list_experiments(args.experiments_dir):
                if exp.error:
                    print(f"{exp.name:24s} (cannot be loaded) {exp.error}")
                    continue
                preset = ",".join(f"{k}={v}" for k, v in exp.preset.items()) or "-"
                source = "built-in" if exp.path.parent == registry.builtin_dir() else exp.path
                print(
                    f"{exp.name:24s} {exp.description}\n{'':24s} preset: {preset}\n"
                    f"{'':24s} source: {source}"
                )
        elif args.command == "config":
            config = registry.load_config(
                _experiment(args), _split_overrides(extra), args.experiments_dir
            )
            print(config_lib.as_overrides(config))
        elif args.command == "inspect":
            from jaxlab.loop import inspection

            config = _inspected_config(args.spec, _split_overrides(extra), args.experiments_dir)
            print(inspection.render(inspection.inspect(config), args.spec))
        elif args.command == "train":
            config = registry.load_config(
                _experiment(args), _split_overrides(extra), args.experiments_dir
            )
            train_validated(
                config, args.workdir, quiet=args.quiet, allow_config_change=args.allow_config_change
            )
        elif args.command == "eval":
            metrics = evaluate_workdir(
                args.workdir, step=args.step, overrides=_split_overrides(extra)
            )
            if jax.process_index() == 0:
                print(json.dumps(metrics))
                if args.output:
                    paths.write_atomic(paths.path(args.output, "output"), json.dumps(metrics))
        elif args.command == "sweep":
            return _sweep(args, _split_overrides(extra))
        elif args.command == "report":
            from jaxlab.report import report  # matplotlib: only this command draws

            print(report(args.workdir, metric=args.metric, descending=args.descending))
        elif args.command == "export":
            from jaxlab.export import export

            platforms = [p.strip() for p in args.platforms.split(",") if p.strip()] or None
            manifest = export(args.workdir, args.output, step=args.step, platforms=platforms)
            print(json.dumps(manifest))
        elif args.command == "compare":
            from jaxlab.compare import compare

            print(compare(args.runs, args.output))
        elif args.command == "data":
            _convert(args)
    except UserError as error:
        print(f"jaxlab: error: {error}", file=sys.stderr)
        return USAGE_ERROR
    except NonFiniteError as error:
        print(f"jaxlab: error: {error}", file=sys.stderr)
        return NONFINITE
    except (StorageError, OSError) as error:
        print(f"jaxlab: error: {error}", file=sys.stderr)
        return STORAGE_ERROR
    except Interrupted as stopped:
        print(f"jaxlab: {stopped}", file=sys.stderr)
        return INTERRUPTED
    return 0


def _quiet_background_errors() -> None:
    """Keeps the libraries' own reports of a storage failure that jaxlab reports itself off the
    terminal: Orbax's background-thread errors (absl logging), asyncio's unretrieved futures, and
    the storage errors (`OSError`) that TensorStore's callbacks and Orbax's threads raise after
    the loop has stopped. A failed checkpoint write then reads as one ``jaxlab: error:`` line
    instead of hundreds. Any other error in a background thread is reported as usual."""
    for name in ("absl", "asyncio"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    default_unraisable, default_thread = sys.unraisablehook, threading.excepthook

    def unraisable(report) -> None:
        if not _storage_error(report.exc_value):
            default_unraisable(report)

    def thread(report) -> None:
        if not _storage_error(report.exc_value):
            default_thread(report)

    sys.unraisablehook, threading.excepthook = unraisable, thread


def _storage_error(error: BaseException | None) -> bool:
    """Whether ``error`` is (or was caused by) a failed write, or is a callback's complaint that
    its event loop closed meanwhile."""
    while error is not None:
        if isinstance(error, OSError) or (
            isinstance(error, RuntimeError) and "Event loop is closed" in str(error)
        ):
            return True
        error = error.__cause__ or error.__context__
    return False


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    del category, filename, lineno, line
    return f"jaxlab: warning: {message}\n"


def console() -> None:
    """The ``jaxlab`` command: `main`, then the process ends once its work is finished and saved.

    Python's own shutdown would then free every object of JAX, Flax and Orbax one by one: 0.4-0.5 s
    of a 3 s one-step run on a 2-core machine (measured). Instead, the exit handlers run (logging,
    JAX's distributed client) and the output is flushed, as in a normal exit, and the process
    ends without the teardown. While a thread that a normal exit winds down is still alive (the
    worker threads of a pool, as on the Grain input path), or on an exception, the process ends
    the normal way.
    """
    try:
        code = main()
    except KeyboardInterrupt:
        print("jaxlab: stopped by SIGINT", file=sys.stderr)
        code = 130
    if any(
        thread is not threading.main_thread() and not thread.daemon
        for thread in threading.enumerate()
    ):
        sys.exit(code)
    atexit._run_exitfuncs()  # noqa: SLF001 - what a normal exit runs at this point
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    console()
