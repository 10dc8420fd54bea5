"""`raysweep`: a thin command-line layer over study loading, the driver and the results.

Every user error is one line on stderr and exit status 2 (a traceback only with --debug).
Exit status of `raysweep run`: 0 when every trial it started finished (completed, stopped
by ASHA or diverged), 3 when any errored (one line per errored trial, tracebacks in the
run's raysweep.log and its record), 130 when interrupted, 2 on bad input.
"""
from __future__ import annotations

import argparse
import contextlib
import shlex
import signal
import sys
import time
import warnings

EXIT_USAGE = 2
EXIT_TRIALS_ERRORED = 3  # the run ended, but some trial errored (retry with --resume)
EXIT_INTERRUPTED = 130   # the shell's code for a process ended by SIGINT
EXIT_NOT_STARTED = 1     # the estimate was declined at the question: nothing ran


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        _unknown_arguments(parser, args.command, unknown)
    # A warning (a skipped record, a damaged checkpoint) is one line, like an error.
    warnings.formatwarning = lambda message, *_a, **_k: f"raysweep: warning: {message}\n"
    try:
        return args.func(args) or 0
    except BrokenPipeError:  # `raysweep show ablations | head`
        sys.stderr.close()
        return 0
    except Exception as exc:
        if args.debug or not _is_user_error(exc):
            raise
        from raysweep.store.redact import redact_text

        print(f"raysweep: error: {redact_text(str(exc))}", file=sys.stderr)
        return EXIT_USAGE


def _is_user_error(exc: Exception) -> bool:
    from raysweep.errors import USER_ERRORS

    return isinstance(exc, USER_ERRORS)


class _Parser(argparse.ArgumentParser):
    """argparse, with every error one line that names the fix (exit 2) instead of the
    usage text: a bare `run` or `show` names the built-in studies."""

    def error(self, message: str):
        import re

        hint = f"; see raysweep {self.prog.split()[-1]} --help" if " " in self.prog else ""
        if wrong := re.search(r"invalid choice: '(.*?)' \(choose from (.*)\)", message):
            import difflib

            close = difflib.get_close_matches(wrong[1], re.findall(r"'(.*?)'", wrong[2]), n=1)
            hint = f"; did you mean {close[0]}?" if close else hint
        elif message.endswith("required: space"):
            from raysweep.study.parse import list_spaces

            hint = (f"; name a study: one of {', '.join(list_spaces())} (raysweep list "
                    f"spaces) or a YAML file")
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}{hint}\n")


def _unknown_arguments(parser: argparse.ArgumentParser, command: str, unknown: list[str]):
    """Refuse arguments the command does not take, with the closest option it does."""
    import difflib

    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    options = [o for a in sub.choices[command]._actions for o in a.option_strings]
    word = unknown[0].split("=", 1)[0]
    close = difflib.get_close_matches(word, options, n=1) if word.startswith("-") else []
    hint = f"; did you mean {close[0]}?" if close else f"; see raysweep {command} --help"
    parser.exit(EXIT_USAGE, f"raysweep {command}: error: unrecognized argument"
                f"{'s' if len(unknown) > 1 else ''}: {' '.join(unknown)}{hint}\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="raysweep", description=__doc__.splitlines()[0])
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a study (a name from search_spaces/ or a YAML path)")
    run.add_argument("space")
    run.add_argument("--local", action="store_true",
                     help="start Ray on this machine (GPU if there is one, else CPU); with "
                     "--address, join the Ray already running here at that address")
    run.add_argument("--train-workers", action="store_true",
                     help="with --local: run each trial in a Ray Train worker group, as on a "
                     "cluster (default there: inside the trial's Tune process, seconds faster)")
    run.add_argument("--address", help="join a running Ray cluster (default: auto when one runs)")
    run.add_argument("--epochs", type=int, help="epoch budget per trial")
    run.add_argument("--seeds", type=int, help="repeat every trial with seeds 0..N-1")
    run.add_argument("--dataset", help="a dataset name (raysweep.datasets.readers.DATASETS)")
    run.add_argument("--data-dir", help="where the dataset is (or goes, with --download)")
    run.add_argument("--download", action="store_true", default=None,
                     help="download the dataset if it is missing")
    run.add_argument("--storage", default="runs",
                     help="folder or URI (s3://bucket/prefix, file:///path) for records and "
                     "checkpoints (default: ./runs)")
    run.add_argument("--name", help="run name (default: the study's); an existing run with "
                     "this name is continued: only trials without a finished record run")
    run.add_argument("--resume", action="store_true",
                     help="continue the existing run --name with the study it was started "
                     "with (error if there is none)")
    run.add_argument("--group", action="append", help="run only this ablation group (repeatable)")
    run.add_argument("--max-trials", type=int, default=None,
                     help="run a study of more trials than the default limit (10,000)")
    run.add_argument("--workers-per-trial", type=int, help="Train workers (DDP ranks) per trial")
    run.add_argument("--max-concurrent", type=int, help="at most this many trials at once")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a study value, e.g. --set lr=0.05 --set asha.grace_period=2")
    run.add_argument("--yes", action="store_true",
                     help="start without asking when the estimate is large (at least 24 "
                     "GPU-hours or 8 hours of wall time)")
    run.add_argument("--verbose", action="store_true",
                     help="stream Ray workers' logs and Ray's own warnings here (otherwise "
                     "Ray's warnings go to the run's raysweep.log)")
    run.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    run.set_defaults(func=cmd_run)

    lst = sub.add_parser("list", help="list models, spaces (studies) or runs")
    lst.add_argument("what", choices=("models", "spaces", "runs"))
    lst.add_argument("--pattern", default="*", help="shell pattern for model names")
    lst.add_argument("--storage", default="runs", help="where to look for runs (default: ./runs)")
    lst.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    lst.set_defaults(func=cmd_list)

    show = sub.add_parser("show", help="show a study's expanded trials before running it")
    show.add_argument("space")
    show.add_argument("--group", action="append")
    show.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    show.add_argument("--workers-per-trial", type=int,
                      help="plan for this many workers per trial (keys do not change)")
    show.add_argument("--gpus", type=int,
                      help="estimate the cost on this many GPUs (from a GPU step time measured "
                      "on this machine earlier, or --gpu-type's profile) instead of this machine")
    show.add_argument("--gpu-type", metavar="NAME",
                      help="estimate for GPUs of this kind from the step times this project "
                      "measured on one (raysweep/estimate/accelerators.json: h100); no GPU "
                      "needed here; --gpus defaults to 1")
    show.add_argument("--no-estimate", action="store_true",
                      help="skip the measured cost estimate")
    show.add_argument("--max-trials", type=int, default=None,
                      help="list and estimate a study of more trials than the default limit")
    show.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    show.set_defaults(func=cmd_show)

    stat = sub.add_parser("status", help="a run's trials: done, running, pending, ETA, GPU-hours")
    stat.add_argument("run_dir")
    stat.add_argument("--watch", action="store_true", help="refresh until the run is over")
    stat.add_argument("--interval", type=float, default=10.0, help="seconds between refreshes")
    stat.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    stat.set_defaults(func=cmd_status)

    cmp = sub.add_parser("compare", help="the arms two runs share, side by side, with Δ")
    cmp.add_argument("run_a")
    cmp.add_argument("run_b")
    cmp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    cmp.set_defaults(func=cmd_compare)

    board = sub.add_parser("tensorboard", help="write a run's TensorBoard files from its records "
                           "(a run synced from a cluster); then tensorboard --logdir RUN/tensorboard")
    board.add_argument("run_dir")
    board.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    board.set_defaults(func=cmd_tensorboard)

    rep = sub.add_parser("report", help="export tables and plots from a run's records")
    rep.add_argument("run_dir")
    rep.add_argument("--format", default="md,csv,tex", help="comma list of md, csv, tex")
    rep.add_argument("--out", help="output folder (default: RUN/report; a report folder "
                     "such as results/showcase is rebuilt in place from the records it carries)")
    rep.add_argument("--check", action="store_true",
                     help="rebuild a report folder elsewhere and name every file that differs "
                     "from it (exit 1 if any)")
    rep.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    rep.set_defaults(func=cmd_report)

    cal = sub.add_parser("calibrate", help="simulate the decision procedure (adaptive seeds, "
                         "paired tests, Holm, ASHA by trial or arm) and print its error rates")
    cal.add_argument("--min", type=int, default=3, help="pilot seeds (seeds.min)")
    cal.add_argument("--max", type=int, default=10, help="most seeds a variant runs (seeds.max)")
    cal.add_argument("--detect", type=float, default=0.5,
                     help="smallest Δ top-1 worth detecting, points (seeds.detect)")
    cal.add_argument("--variants", type=int, default=3, help="variants per ablation group")
    cal.add_argument("--groups", type=int, default=10_000, help="simulated groups per row")
    cal.add_argument("--sd-diff", type=float, default=None,
                     help="std of a variant's per-seed Δ test top-1, points (default: the "
                     "committed Fashion-MNIST study's)")
    cal.add_argument("--trial-gpu-hours", type=float, default=1.0,
                     help="GPU-hours of one trial, to state each design's cost")
    cal.add_argument("--seed", type=int, default=0, help="the simulation's random seed")
    cal.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    cal.set_defaults(func=cmd_calibrate)
    return p


def _cli_overrides(args) -> dict:
    return {"defaults.epochs": args.epochs, "seeds": args.seeds, "defaults.dataset": args.dataset,
            "defaults.data_dir": args.data_dir, "defaults.download": args.download,
            "resources.workers_per_trial": args.workers_per_trial,
            "resources.max_concurrent": args.max_concurrent}


def cmd_run(args) -> int:
    from raysweep.datasets.readers import check_data
    from raysweep.store.records import check_writable, refuse_other_versions

    # Validate everything that can be validated before Ray starts (and before Ray and
    # Tune are imported: a bad value is reported in the time it takes to read the study).
    study, run_dir = _study_to_run(args)
    check_data(study.trials())
    for line in study.twins():   # one trial, before anything runs
        print(f"raysweep: {line}: trained once, carrying every label", flush=True)
    check_writable(run_dir)
    refuse_other_versions(run_dir)

    from raysweep.engine import cluster, driver
    from raysweep.observe.progress import make_progress
    from raysweep.store.runlock import RunLock

    # One run per run folder: a second `raysweep run` on it is refused before Ray starts.
    # Ray's own warnings go to the run's log unless --verbose: the terminal shows the study.
    quiet = contextlib.nullcontext() if args.verbose else driver.ray_log(run_dir, "ray")
    with RunLock(run_dir), quiet:
        print(f"raysweep: log (Ray's and Tune's messages, tracebacks) at "
              f"{driver.log_path(run_dir)}", flush=True)
        begin = time.perf_counter()
        url = cluster.connect(args.local, args.address, verbose=args.verbose)
        # `kill` stops a study like Ctrl-C: trials interrupted, the lock released. (Set
        # after Ray starts: its core worker installs a SIGTERM handler of its own.)
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        timings = {"ray_start_seconds": time.perf_counter() - begin}
        if url:
            print(f"raysweep: Ray dashboard at {url}\nraysweep: {cluster.TOKEN_HELP}",
                  flush=True)
        progress = make_progress(study.name, study.total_trials())
        try:
            driver.run_study(study, args.storage, run_dir.name, args.resume, timings,
                             inline=args.local and not args.train_workers, progress=progress,
                             confirm=lambda *plan: _cost_first(study, args.yes, *plan))
        except driver.NotStarted:
            print("raysweep: not started: nothing ran and nothing was written but the run "
                  "folder", file=sys.stderr)
            return EXIT_NOT_STARTED
        except driver.Interrupted:
            progress.close()
            _print_summary(study, run_dir)
            print(f"raysweep: interrupted; finished trials are kept, interrupted ones resume "
                  f"from their last epoch checkpoint: {_resume_command(args, run_dir)}",
                  file=sys.stderr)
            return EXIT_INTERRUPTED
        finally:
            progress.close()
            cluster.disconnect()
    _print_summary(study, run_dir)
    print(f"\n{timings['trials_run']} of {timings['trials_total']} trials run "
          f"({timings['trials_total'] - timings['trials_run']} already finished); "
          f"Ray start {timings['ray_start_seconds']:.1f} s, "
          f"Tune {timings.get('tune_seconds', 0):.1f} s, "
          f"{timings.get('max_concurrent', 0)} trial(s) at once ({timings.get('runner')})"
          + (f", {timings['fused_arrays']} fused array(s)" if timings.get("fused_arrays") else "")
          + (f", GPU share per worker {'/'.join(f'{g:g}' for g in timings['gpu_shares'])}"
             if any(timings.get("gpu_shares", [])) else ""))
    print(f"records: {run_dir / 'records'}")
    return _errored_summary(study, run_dir, args)


def _cost_first(study, yes: bool, specs, resources, concurrent: int,
                stdin=None, stdout=None) -> bool:
    """Before any trial starts: the study's estimate on the cluster it will run on, and
    whether to start. Known without measuring (a step time cached by `show`, or a GPU
    profile of the cluster's kind), or measured now when the study is large; a study
    estimated at ASK_GPU_HOURS GPU-hours or ASK_WALL_HOURS hours is started only when
    the user says so at a terminal (or --yes); off a terminal it starts, the estimate
    printed."""
    import ray

    from raysweep.estimate import cost

    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    cluster = ray.cluster_resources()
    gpus = int(cluster.get("GPU", 0))
    kinds = [k.split(":", 1)[1] for k in cluster if k.startswith("accelerator_type:")]
    est = cost.known_estimate(specs, study.asha, resources, concurrent, gpus,
                              kinds[0] if kinds else None)
    epochs = sum(s.train.epochs for s in specs)
    if study.seed_plan:
        plan = study.seed_plan
        print(f"raysweep: adaptive seeds: the estimate is for the first look ({plan.min} "
              f"seeds an arm); open ablation variants and their baselines may run up to "
              f"{plan.max} ({len(study.most_trials())} trials in all)", file=stdout,
              flush=True)
    if est is None and epochs >= cost.MEASURE_TRIAL_EPOCHS:
        try:
            est = cost.estimate(specs, study.asha, resources, concurrent, on_measure=lambda m:
                                print(f"raysweep: measuring {m} step time ...", file=stdout,
                                      flush=True))
        except cost.EstimateError as exc:
            print(f"raysweep: no estimate: {exc}", file=stdout)
    if est is None:
        print(f"raysweep: {len(specs)} trial{'s' * (len(specs) != 1)}, {epochs:,} "
              f"trial-epochs; no step time is known "
              f"here (`raysweep show` measures one)", file=stdout, flush=True)
        return True
    lines = cost.format_estimate(est)
    print("\n".join(f"raysweep: {line}" for line in lines[:2 if est.asha else 1]),
          file=stdout, flush=True)
    why = cost.over_budget(est)
    if why is None or yes:
        return True
    if not stdin.isatty():
        print(f"raysweep: starting a study of {why} without asking: not a terminal",
              file=stdout, flush=True)
        return True
    print(f"raysweep: start this study of {why}? [y/N] ", end="", file=stdout, flush=True)
    return stdin.readline().strip().lower() in ("y", "yes")


def _errored_summary(study, run_dir, args) -> int:
    """0, or EXIT_TRIALS_ERRORED with one line per errored trial and a summary line: a
    scheduler or CI job that runs a study sees a failed trial as a failure."""
    from raysweep.engine.driver import log_path
    from raysweep.store.redact import redact_text
    from raysweep.store.records import read_records

    keys = {t.key for t in study.trials()}
    errored = [r for r in read_records(run_dir)
               if (r.key in keys or r.sampled_from in keys) and r.status == "errored"]
    if not errored:
        return 0
    for r in errored:
        print(f"raysweep: error: trial {r.label} ({r.key}) errored after {r.last_epoch}/"
              f"{r.epochs} epochs: {redact_text(r.error or 'unknown error')}", file=sys.stderr)
    print(f"raysweep: error: {len(errored)} of {study.total_trials()} trials errored; "
          f"tracebacks in {log_path(run_dir)} and in their records; once the cause is fixed, "
          f"{_resume_command(args, run_dir)} retries them", file=sys.stderr)
    return EXIT_TRIALS_ERRORED


def _study_to_run(args):
    """(study, run folder): a new run reads the study file with this command line's
    values; `--resume` reads the study the run was started with (its study.yaml) and
    takes only values that keep every finished trial's identity."""
    from raysweep.store.storage import run_location
    from raysweep.study.parse import MAX_TRIALS, check_name, load_study

    if args.name is not None:
        check_name("--name", args.name)
    if not args.resume:
        study = load_study(args.space, args.set, _cli_overrides(args), args.group)
        run_dir = run_location(args.storage, args.name or study.name)
    else:
        from raysweep.engine.driver import resume_study

        run_dir = run_location(args.storage, args.name or _study_name(args.space))
        study = resume_study(run_dir, args.set, _cli_overrides(args), args.group)
    study.check_size(args.max_trials or MAX_TRIALS)
    return study, run_dir


def _study_name(space: str) -> str:
    from raysweep.errors import StudyError
    from raysweep.study.parse import load_study

    try:
        return load_study(space).name
    except StudyError:
        return space  # the study file is gone: the run may still be there under this name


def _resume_command(args, run_dir) -> str:
    from raysweep.store.redact import redact_text

    return "raysweep " + shlex.join(["run", args.space, "--storage", redact_text(args.storage),
                                     "--name", run_dir.name, "--resume"]
                                    + (["--local"] if args.local else []))


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def _print_summary(study, run_dir) -> None:
    from raysweep.store.records import read_records

    keys = {t.key for t in study.trials()}
    print(summary_table([r for r in read_records(run_dir)
                         if r.key in keys or r.sampled_from in keys]))


def summary_table(records) -> str:
    """One line per trial: its label, status, last epoch and accuracies (val and test)."""
    head = (f"{'trial':<34} {'label':<30} {'status':<16} {'ep':>4} {'val top1':>8} "
            f"{'test top1':>9} {'sec':>7}")
    lines = [head, "-" * len(head)]
    for r in sorted(records, key=lambda r: (r.label, r.key)):
        last = r.history[-1] if r.history else None
        status = r.status + (f"@{r.stopped_at_epoch}" if r.stopped_at_epoch else "")
        secs = sum(h.epoch_seconds for h in r.history)
        lines.append(f"{r.key:<34} {r.label:<30} {status:<16} {r.last_epoch:>4} "
                     f"{_fmt(last and last.val_top1):>8} {_fmt(last and last.test_top1):>9} "
                     f"{secs:>7.1f}")
    return "\n".join(lines)


def _fmt(x) -> str:
    return "" if x is None else f"{x:.2f}"


def cmd_list(args) -> int:
    from models import get_entry, list_models, model_facts
    from raysweep.study.parse import list_spaces

    if args.what == "spaces":
        for name in list_spaces():
            print(name)
        return 0
    if args.what == "runs":
        from raysweep.observe import runs

        print(runs.format_runs(runs.list_runs(args.storage)))
        return 0
    print(f"{'model':<30} {'family':<12} {'params(M)':>9} {'FLOPs(M)':>9} {'recipe':<15} "
          f"{'innov':<5} options")
    for name in list_models(args.pattern):
        entry, facts = get_entry(name), model_facts(name)
        print(f"{name:<30} {entry.family:<12} {facts.params / 1e6:>9.4f} "
              f"{facts.flops / 1e6:>9.1f} {entry.recipe:<15} "
              f"{'yes' if entry.innovation else '':<5} {entry.describe_options()}")
    return 0


SHOW_FIRST = 50   # trials `show` lists of a study past the trial limit


def _show_head(study, trials) -> str:
    """The trial count `run` will run (the same as the summary's), and why it is fewer
    than arms × grid points × seeds when arms share trials."""
    total = study.total_trials(trials)
    head = f"study {study.name} ({study.path}): {total:,} trials"
    if study.count() == total:
        return head
    return (f"{head} ({study.count():,} arm × seed combinations, of which "
            f"{study.count() - total:,} are trials another arm already runs: a baseline "
            f"shared by groups, or two model names of one network)")


def cmd_show(args) -> int:
    import itertools

    from raysweep.study.parse import MAX_TRIALS, load_study

    cli = {"resources.workers_per_trial": args.workers_per_trial}
    study = load_study(args.space, args.set, cli, args.group)
    limit = args.max_trials or MAX_TRIALS
    if study.count() > limit:
        print(f"study {study.name} ({study.path}): up to {study.count():,} trials (arms × "
              f"grid points × seeds, before trials that arms share are merged)")
        # Listed lazily, so a huge study costs no more than the lines printed.
        for spec in itertools.islice(study.iter_trials(), SHOW_FIRST):
            print(f"{spec.key:<34} {spec.label}")
        print(f"... and {study.count() - SHOW_FIRST:,} more: more than --max-trials={limit:,}, "
              f"so `raysweep run` refuses it; narrow the study, or pass --max-trials")
        return 0
    trials = study.trials()
    print(_show_head(study, trials))
    if study.asks_auto_amp():
        from raysweep.core.precision import resolve_here

        print(f"{resolve_here().why}; resolved for this machine (Ray is not started here): "
              f"`raysweep run` resolves it for where the trials run")
    for line in study.twins():
        print(line)
    labels = [t.label + (f" (+{len(t.labels) - 1} more labels)" if len(t.labels) > 1 else "")
              for t in trials]
    wk, wl, wm = (max([len(h), *map(len, col)]) for h, col in (
        ("key", [t.key for t in trials]), ("label", labels), ("model", [t.model for t in trials])))
    print(f"{'key':<{wk}} {'label':<{wl}} {'model':<{wm}} {'epochs':>6} {'batch':>6} "
          f"{'peak lr':>8} {'recipe':<14} options/overrides")
    for t, label in zip(trials, labels):
        extra = " ".join(f"{k}={v}" for k, v in {**t.model_options, **t.overrides}.items())
        print(f"{t.key:<{wk}} {label:<{wl}} {t.model:<{wm}} {t.train.epochs:>6} "
              f"{t.train.batch_size:>6} {t.train.peak_lr:>8.3g} {t.train.recipe:<14} {extra}")
    r = study.resources
    gpus = "auto (by model size on a GPU cluster, 0 on CPU)" if r.gpus_per_worker == "auto" \
        else f"{r.gpus_per_worker} per worker"
    searched = sorted({f"{k} ({scope})" for scope, p in study.search.items() for k in p})
    samples = (f" × {study.num_samples} {study.search_algorithm} samples of "
               f"{', '.join(searched)}") if study.search else ""
    print(f"\n{len(trials)} trials{samples}; epoch budget {sum(t.train.epochs for t in trials)}"
          f" trial-epochs{' (× samples)' if study.search else ''}; {r.workers_per_trial} "
          f"worker(s) per trial, GPUs: {gpus}; ASHA "
          + (f"grace {study.asha.grace_period}, reduction {study.asha.reduction_factor}"
             f" on validation top-1, by {study.asha.by}" if study.asha.enabled else "off"))
    if study.seed_plan:
        print(_seed_plan_line(study, trials))
    if study.asha.enabled:
        print(_rung_line(study, trials))
    if not args.no_estimate:
        print("\n".join(_estimate_lines(study, trials, args.gpus, args.gpu_type)))
    return 0


def _seed_plan_line(study, trials) -> str:
    """What adaptive seeds may add to the trials listed (the first look's)."""
    plan = study.seed_plan
    most = len(study.most_trials())
    return (f"adaptive seeds: the {len(trials)} trials above are every arm's first {plan.min} "
            f"seeds; ablation variants whose verdict is open (and their baselines) get more, "
            f"looked at {', '.join(map(str, plan.looks))} seeds, until decided, within "
            f"±{plan.detect:g} points, or {plan.max} seeds: at most {most} trials; the "
            f"estimate below is for the first look")


def _rung_line(study, trials) -> str:
    """Where ASHA may stop a trial, per epoch budget (each budget competes only with
    itself, `raysweep.engine.rungs`)."""
    from raysweep.decide.rungs import milestones

    budgets = sorted({t.train.epochs for t in trials})
    rungs = [(b, milestones(b, study.asha.grace_period, study.asha.reduction_factor))
             for b in budgets]
    return "ASHA rungs per epoch budget (trials compete only within their budget): " + "; ".join(
        f"{b} epoch{'s' * (b != 1)}: " + (f"epoch {', '.join(f'{m:g}' for m in ms)}" if ms else "none, trains in full")
        for b, ms in rungs)


def _estimate_lines(study, trials, gpus: int | None, gpu_type: str | None) -> list[str]:
    """The study's cost from step times measured on this machine (cached), or for
    `gpu_type` GPUs from that profile, with the trials planned as on a cluster of them."""
    import os

    import torch

    from raysweep.estimate.cost import estimate, estimate_on_profile, format_estimate
    from raysweep.estimate.profiles import CPUS_PER_GPU, profile
    from raysweep.core.planning import plan_trials

    if gpu_type:
        prof, gpus = profile(gpu_type), gpus or 1
        cluster = {"CPU": CPUS_PER_GPU * gpus, "GPU": gpus}
        resources, _ = plan_trials(study.resources, trials, cluster)
        return format_estimate(estimate_on_profile(trials, study.asha, resources, gpus, prof))

    here = {"CPU": os.cpu_count() or 1, "GPU": torch.cuda.device_count()}
    resources, concurrent = plan_trials(study.resources, trials, here)
    est = estimate(trials, study.asha, resources, concurrent,
                   gpus=gpus, on_measure=lambda m: print(f"raysweep: measuring {m} step time ...",
                                                         file=sys.stderr, flush=True))
    return format_estimate(est)


def cmd_status(args) -> int:
    from raysweep.observe import runs
    from raysweep.observe.progress import format_view

    if args.watch:
        runs.watch(args.run_dir, args.interval)
    else:
        print(format_view(runs.status(args.run_dir)))
    return 0


def cmd_compare(args) -> int:
    from raysweep.observe import runs

    print(runs.format_comparison(runs.compare(args.run_a, args.run_b)))
    return 0


def cmd_tensorboard(args) -> int:
    from raysweep.errors import NoRecordsError
    from raysweep.observe.runs import run_folder
    from raysweep.observe.tensorboard import export_run

    run_dir = run_folder(args.run_dir)
    if not (run_dir / "records").is_dir():
        raise NoRecordsError(f"{run_dir} is not a run folder (it has no records/)")
    for folder in export_run(run_dir):
        print(folder)
    return 0


def cmd_calibrate(args) -> int:
    from raysweep.decide import calibration
    from raysweep.study.sections import SeedPlan
    from raysweep.errors import RaysweepError

    bad = next(((name, value, allowed) for name, value, allowed, ok in (
        ("--min", args.min, "2 or more", args.min >= 2),
        ("--max", args.max, f"--min ({args.min}) or more", args.max >= args.min),
        ("--detect", args.detect, "a number > 0", args.detect > 0),
        ("--variants", args.variants, "1 or more", args.variants >= 1),
        ("--groups", args.groups, "100 or more", args.groups >= 100),
        ("--sd-diff", args.sd_diff, "a number > 0", args.sd_diff is None or args.sd_diff > 0),
        ("--trial-gpu-hours", args.trial_gpu_hours, "a number > 0", args.trial_gpu_hours > 0),
    ) if not ok), None)
    if bad:
        raise RaysweepError(f"{bad[0]}={bad[1]} is not allowed; allowed: {bad[2]}")
    print(calibration.tables(SeedPlan(args.min, args.max, args.detect), args.variants,
                             args.groups, args.sd_diff or calibration.SD_DIFF,
                             args.trial_gpu_hours, args.seed))
    return 0


def cmd_report(args) -> int:
    from raysweep.results import report

    warnings.simplefilter("always")
    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    from raysweep.errors import StudyError

    bad = [f for f in formats if f not in ("md", "csv", "tex")]
    if bad:
        raise StudyError(f"--format {bad[0]!r} is not a format; allowed: md, csv, tex")
    from raysweep.observe.runs import run_folder

    run_dir = run_folder(args.run_dir)
    if args.check:
        from raysweep.results.rebuild import check

        found = check(run_dir)
        print("\n".join(found) if found else f"{run_dir}: every file rebuilds byte for byte")
        return 1 if found else 0
    for path in report(run_dir, args.out, formats):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
