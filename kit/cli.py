"""The `kit` command line: parses options and calls the library. Nothing else lives here.

User errors raised anywhere as `KitError` come out as `Error: <message>`, exit status 1.
"""

from __future__ import annotations

from pathlib import Path

import click

from kit import config, data, groups, hparams, ledger, models, runs, training
from kit import ensemble as ensemble_mod  # *_mod: the command functions take the modules' names
from kit import fixture as fixture_mod
from kit import submit as submit_mod
from kit.emulator import competitions as emulator_competitions
from kit.emulator import server as emulator_server
from kit.errors import KitError
from kit.kaggle import competitions
from kit.pseudo import DEFAULT_THRESHOLD, PseudoLabels
from kit.remote import run as remote_mod
from kit.report import page as report_mod

_OVERRIDES = "kit.settings"  # ctx.meta key: the settings options given to this command


class KitCommand(click.Command):
    """A command that runs with one config.Settings: the environment plus the settings options
    given to it (--data-dir, --competition), active until it returns. os.environ is never
    written, so nothing carries over to the next command run in the same process."""

    def invoke(self, ctx: click.Context):
        with config.activate(config.Settings.from_env(**ctx.meta.get(_OVERRIDES, {}))):
            return super().invoke(ctx)


class ModelCommand(KitCommand):
    """`kit train <model>`: its --help lists the options of each group of the model's config
    (kit.hparams.param's `group`: architecture, optimisation, ...) under a heading of their own,
    after the other options; a config without groups, one list."""

    def __init__(self, *args, config_cls: type, **kwargs):
        super().__init__(*args, **kwargs)
        self.option_groups = hparams.by_group(config_cls)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        heading = {n: f"{g.capitalize()} options" for g, names in self.option_groups.items() for n in names}
        sections: dict[str, list] = {"Options": []}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                sections.setdefault(heading.get(param.name, "Options"), []).append(record)
        for title, records in sections.items():
            with formatter.section(title):
                formatter.write_dl(records)


class KitGroup(click.Group):
    """A click group that turns KitError into a clean `Error: ...` and exit 1."""

    command_class = KitCommand

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except KitError as e:
            raise click.ClickException(str(e)) from None


def _setting(field: str):
    """Option callback: record the value as the command's override of Settings.`field`."""

    def callback(ctx: click.Context, param: click.Parameter, value):
        ctx.meta.setdefault(_OVERRIDES, {})[field] = value
        return value

    return callback


data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="KIT_DATA_DIR",
    callback=_setting("data_dir"),
    expose_value=False,
    is_eager=True,
    help="Data folder (raw CSVs, manifest, cache). Env: KIT_DATA_DIR. [default: ./data]",
)

competition_option = click.option(
    "--competition",
    envvar="KIT_COMPETITION",
    callback=_setting("competition"),
    expose_value=False,
    is_eager=True,
    type=click.Choice(sorted(config.COMPETITIONS)),
    help="Competition spec (slug and expected sizes). Env: KIT_COMPETITION. [default: digit-recognizer]",
)


@click.group(cls=KitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kit")
def cli():
    """kit: a Kaggle submission kit for Digit Recognizer.

    \b
    Main flow:  kit download -> kit train scratch / kit train cnn -> kit ensemble
                -> kit predict -> kit submit -> kit scores
    """


# ============================================================================ data (foundation)


@cli.command()
@click.option(
    "--from",
    "source",
    type=click.Path(exists=True, path_type=Path),
    help="Use a zip or folder you already have instead of downloading.",
)
@click.option("--force", is_flag=True, help="Download and verify again even if the data is in place.")
@data_dir_option
@competition_option
def download(source: Path | None, force: bool):
    """Download the competition data with the official kaggle client, verify and unpack it.

    Needs Kaggle credentials (~/.kaggle/kaggle.json, KAGGLE_USERNAME/KAGGLE_KEY or
    KAGGLE_API_TOKEN) and the competition rules accepted on kaggle.com. A second run with
    the data already verified does nothing.
    """
    if source is None:
        result = competitions.download(force=force, echo=click.echo)
    else:
        result = data.install(source, force=force, echo=click.echo)
    click.echo(result)


@cli.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to write the fixture competition. [default: .cache/fixture]",
)
def fixture(out: Path | None):
    """Build the small fixture competition from scikit-learn's digits (for tests and the demo)."""
    path = fixture_mod.build(out)
    click.echo(f"fixture competition in {path}")


@cli.command("runs")
@click.option(
    "--model", default=None, type=click.Choice([*models.names(), "ensemble"]), help="Only this model's runs."
)
@click.option("--all", "show_all", is_flag=True, help="Include unfinished (crashed or running) runs.")
def list_runs(model: str | None, show_all: bool):
    """List training runs with their validation accuracy (a group's member: on its fold), then
    the cross-validated groups."""
    found = runs.all_runs(model=model, finished=not show_all)
    if not found:
        click.echo(f"no runs in {config.runs_dir()}")
        return
    for r in found:
        m = r.metrics
        acc = f"{m['val_accuracy']:.4f}" if "val_accuracy" in m else "unfinished"
        where = f"  fold {m['fold'] + 1} of {m['group']}" if "group" in m else ""
        click.echo(f"{r.name:45s} {acc}{where}")
    for g in groups.all_groups():
        if model in (None, g.model):
            done = len(g.runs())
            state = "finished" if g.complete else f"{done}/{len(g.members)} members finished"
            click.echo(f"group {g.name}: {g.folds} folds x {g.repeats} repeats, {state}")


# ============================================================================ training


@cli.group(cls=KitGroup)
def train():
    """Train a model; each run writes a folder under runs/."""


def _refuse_overrides_on_resume(names: list[str]) -> None:
    """--resume continues with the run's saved settings: refuse any also given on the command line."""
    given = _given(names)
    if given:
        flags = ", ".join("--" + n.replace("_", "-") for n in given)
        raise KitError(
            f"--resume continues a run with the settings it was started with; "
            f"drop {flags} (or start a new run without --resume)"
        )


def _after_training(run: runs.Run, report: bool) -> None:
    """Print a finished run's headline numbers and folder; write its report if asked."""
    m = run.metrics
    click.echo(
        f"val accuracy {m['val_accuracy']:.4f}  val loss {m['val_loss']:.4f}  "
        f"kept epoch {m['kept_epoch']}/{m['epochs_run']}  training {m['train_time_s']:.1f}s"
    )
    click.echo(f"run folder: {run.path}")
    if report:
        try:
            out = report_mod.build([run.path])
        except KitError:
            raise
        except Exception as e:  # the run is safe on disk; say so rather than lose it in a traceback
            raise KitError(
                f"the run finished ({run.path}) but its report failed: "
                f"{type(e).__name__}: {e}; try `kit report {run.path}`"
            ) from None
        click.echo(f"report: {out}")


def _given(names: list[str]) -> list[str]:
    """The options among `names` that the user typed on the command line."""
    ctx = click.get_current_context()
    return [n for n in names if ctx.get_parameter_source(n) == click.core.ParameterSource.COMMANDLINE]


def _after_group(group: groups.Group) -> None:
    """A finished group: its members, then its out-of-fold yardstick (an ensemble run)."""
    click.echo(
        f"group {group.name}: {len(group.members)} members ({group.folds} folds x {group.repeats} repeats)"
    )
    ensemble_mod.build_groups([group.name], echo=click.echo)


def _fmt_hparam(v) -> str:
    return ",".join(map(str, v)) if isinstance(v, tuple) else str(v)


def _parse_widths(ctx, param, value):
    if value is None:
        return None
    try:
        return tuple(int(w) for w in value.split(","))
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a comma-separated list of layer widths, e.g. 1024,1024"
        ) from None


def _hparam_option(fld, defaults, presets: dict):
    """One option for one config field (--batch-size, --hidden 1024,1024, --augment/--no-augment),
    default None = keep the preset's value; the help shows each preset's value where they differ."""
    flag, value = "--" + fld.name.replace("_", "-"), getattr(defaults, fld.name)
    per_preset = {p: _fmt_hparam(v.get(fld.name, value)) for p, v in presets.items()}
    if len(set(per_preset.values())) == 1:
        help_ = f"{fld.metadata['help']}  [default: {_fmt_hparam(value)}]"
    else:
        help_ = f"{fld.metadata['help']}  [{', '.join(f'{p}: {v}' for p, v in per_preset.items())}]"
    if isinstance(value, bool):
        return click.option(f"{flag}/--no-{flag[2:]}", fld.name, default=None, help=help_)
    if isinstance(value, tuple):
        return click.option(
            flag, fld.name, default=None, metavar="N[,N...]", help=help_, callback=_parse_widths
        )
    if fld.metadata.get("choices"):
        return click.option(
            flag, fld.name, default=None, help=help_, type=click.Choice(fld.metadata["choices"])
        )
    return click.option(flag, fld.name, default=None, type=type(value), help=help_)


def _hparam_options(model: models.Model, skip: tuple[str, ...] = ()) -> list:
    """An option per field of the model's config dataclass (its one home), but `skip`."""
    import dataclasses

    defaults = model.config_cls()
    return [
        _hparam_option(f, defaults, model.presets)
        for f in dataclasses.fields(model.config_cls)
        if f.metadata.get("cli", True) and f.name not in skip
    ]


def _with_options(command, options: list):
    """`command` decorated by `options`, the first listed shown first in --help."""
    for option in reversed(options):
        command = option(command)
    return command


class Jobs(click.ParamType):
    """--jobs: a count from 1, or auto (None: kit.training.auto_jobs decides where it trains)."""

    name = "N|auto"

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, int) and value >= 1:
            return value
        if str(value).strip().lower() == "auto":
            return None
        if str(value).strip().isdigit() and int(value) >= 1:
            return int(value)
        self.fail(f"{value!r} is neither a count of 1 or more nor auto", param, ctx)


# The options of every `kit train <model>` that say what is trained beside the hyper-parameters:
# a cross-validated group (kit.groups) and pseudo-labels (kit.pseudo).
GROUP_OPTIONS = [
    click.option(
        "--folds",
        type=click.IntRange(2, groups.MAX_FOLDS),
        default=None,
        metavar="K",
        help="Train a cross-validated group: K members, each on K-1 stratified folds of all the "
        "labelled rows, validated on its own fold; then judge the group out of fold (kit ensemble).",
    ),
    click.option(
        "--repeats",
        type=click.IntRange(min=1),
        default=1,
        show_default=True,
        metavar="R",
        help="With --folds: R fold assignments (K x R members; every row out of fold for R of them).",
    ),
    click.option(
        "--fold-seed",
        type=int,
        default=config.SPLIT_SEED,
        show_default=True,
        help="With --folds: the seed of the fold assignments.",
    ),
    click.option(
        "--same-folds",
        is_flag=True,
        help="With --folds: every repeat uses the first fold assignment (repeats differ by seed only).",
    ),
    click.option(
        "--jobs",
        type=Jobs(),
        default="auto",
        show_default=True,
        metavar="N|auto",
        help="With --folds: members trained at once, each in its own process. auto: one at a time "
        "on a CPU (only start-up and prediction would overlap); with NVIDIA GPUs up to "
        f"{training.GPU_JOBS_PER_CARD} a card, which one small network's steps leave mostly idle "
        "(at most half the cores).",
    ),
    click.option(
        "--pseudo-labels",
        default=None,
        metavar="RUN|GROUP",
        help="Add the test images this teacher labels with high confidence to the training rows: "
        "a run on the same split, or for --folds a group with the same folds (each member learns "
        "from the teacher member that never saw its fold).",
    ),
    click.option(
        "--pseudo-threshold",
        type=click.FloatRange(0.5, 1.0, min_open=True),
        default=DEFAULT_THRESHOLD,
        show_default=True,
        help="With --pseudo-labels: the teacher's probability a test image needs.",
    ),
]
GROUP_KEYS = ("folds", "repeats", "fold_seed", "same_folds", "jobs")
PSEUDO_KEYS = ("pseudo_labels", "pseudo_threshold")


def _train(model: models.Model, preset: str, resume: str | None, report: bool, quiet: bool, kw: dict) -> None:
    """`kit train <model>` once its options are parsed: `kw` holds the hyper-parameters and the
    GROUP_OPTIONS' values."""
    g = {k: kw.pop(k) for k in GROUP_KEYS}
    pl = PseudoLabels(kw["pseudo_labels"], kw["pseudo_threshold"]) if kw["pseudo_labels"] else None
    hparams = {k: v for k, v in kw.items() if k not in PSEUDO_KEYS}
    if resume is not None:
        _refuse_overrides_on_resume([*hparams, "preset", *PSEUDO_KEYS, *GROUP_KEYS[:-1]])
        cfg = None
    else:
        cfg = model.make_config(preset, **hparams)
    if resume is not None and groups.is_group(resume):
        _after_group(training.resume_group(resume, not quiet, g["jobs"]))
    elif g["folds"] is not None:
        args = (g["folds"], g["repeats"], g["fold_seed"], g["same_folds"], not quiet, g["jobs"])
        _after_group(training.train_group(model.name, cfg, *args, pseudo=pl))
    elif _given(list(GROUP_KEYS)):
        raise KitError(
            "--repeats, --fold-seed, --same-folds and --jobs go with --folds K (a cross-validated group)"
        )
    else:
        _after_training(training.train(model.name, cfg, resume, not quiet, pseudo=pl), report)


def _train_command(model: models.Model) -> None:
    """`kit train <model>`: the model's options, then the run's."""

    def command(preset: str, resume: str | None, report: bool, quiet: bool, **kw):
        _train(model, preset, resume, report, quiet, kw)

    command.__doc__ = (
        f"Train {model.summary} and write a run folder; with --folds, a cross-validated group of them."
    )
    command.__name__ = f"train_{model.name}"
    options = [
        click.option(
            "--preset",
            default="default",
            show_default=True,
            metavar="NAME",
            help=f"Starting hyper-parameters: {', '.join(model.presets)}.",
        ),
        *_hparam_options(model),
        *GROUP_OPTIONS,
        click.option(
            "--resume",
            default=None,
            metavar="RUN|GROUP",
            help=f"Continue an interrupted {model.name} run (folder or name) from its last "
            f"checkpoint, with its saved settings; or an interrupted group's unfinished members.",
        ),
        click.option("--report", is_flag=True, help="Write an HTML report of the run when training ends."),
        click.option("--quiet", is_flag=True, help="No progress output."),
        data_dir_option,
        competition_option,
    ]
    train.command(model.name, cls=ModelCommand, config_cls=model.config_cls)(_with_options(command, options))


for _model in models.MODELS.values():
    _train_command(_model)

# ============================================================================ ensemble, submissions, ledger
# (owned by kit/ensemble.py, kit/submit.py, kit/ledger.py)


@cli.command()
@click.argument("run_refs", nargs=-1)
@click.option(
    "--cnn-seeds",
    type=click.IntRange(min=1),
    default=None,
    help="Use the latest N CNN runs plus the latest scratch run (after `make train-ensemble`).",
)
@data_dir_option
@competition_option
def ensemble(run_refs: tuple[str, ...], cnn_seeds: int | None):
    """Average runs' probabilities: equal weights, unless weights fitted on the validation split
    make clearly fewer errors there (cross-fitted, beyond their bootstrap noise); or average the
    members of cross-validated groups and judge them out of fold, on every labelled row.

    RUN_REFS: run folders, run names or model names (default: the latest run of each model), or
    group names (`kit train cnn --folds K`; default: the latest group, if it finished last).
    A group and fixed-split runs are never mixed.
    """
    ensemble_mod.build(list(run_refs) or None, cnn_seeds=cnn_seeds, echo=click.echo)


def _run_or_group(ref: str) -> runs.Run:
    """The run `ref` names, or for a group its out-of-fold ensemble (made now if it has none)."""
    if groups.is_group(ref):
        return ensemble_mod.group_run(ref, echo=click.echo)
    return runs.require_run(runs.resolve(ref))


@cli.command()
@click.argument("run_ref", required=False)
@competition_option
def predict(run_ref: str | None):
    """Write submissions/<UTC time>_<run>.csv (+ .json record) from a run's test predictions.

    RUN_REF: a run folder, run name or model name, or a group (its out-of-fold ensemble)
    (default: the run that finished last, an ensemble or a single model). Says which run, with its validation accuracy and members, and
    warns about newer finished runs left out of it; the CSV's path is the last line.
    """
    run = _run_or_group(run_ref) if run_ref else submit_mod.default_run()
    for line in submit_mod.describe(run):
        click.echo(line, err=line.startswith("Warning:"))
    click.echo(submit_mod.write_submission(run))


@cli.command()
@click.argument("file", required=False, type=click.Path(path_type=Path))
@click.option(
    "-m",
    "--message",
    default=None,
    help="Submission description (default: the runs and their validation accuracy).",
)
@click.option(
    "--retry", is_flag=True, help="Send the pending submissions (failed or refused uploads) instead."
)
@click.option("--force", is_flag=True, help="Submit even if the same file (sha256) was submitted before.")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for the leaderboard score.")
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0),
    default=None,
    help="Stop waiting for the score after this many seconds. [default: 600]",
)
@competition_option
def submit(
    file: Path | None, message: str | None, retry: bool, force: bool, wait: bool, timeout_s: float | None
):
    """Validate a submission CSV, upload it to Kaggle and wait for its public score.

    FILE: a submission CSV, or a group's name (its ensemble's CSV, written now) (default: the
    latest run's, written now if it has none).
    """
    if file is not None and groups.is_group(str(file)):
        file = submit_mod.write_submission(_run_or_group(str(file)))
    cfg = submit_mod.WaitConfig() if timeout_s is None else submit_mod.WaitConfig(timeout_s=timeout_s)
    if retry:
        if file or message or force:
            raise KitError(
                "--retry sends the pending submissions as recorded; give no FILE, -m or --force with it"
            )
        submit_mod.retry(wait=wait, wait_cfg=cfg, echo=click.echo)
    else:
        submit_mod.submit(file, message, force=force, wait=wait, wait_cfg=cfg, echo=click.echo)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the ledger as JSON records.")
@click.option("--csv", "as_csv", is_flag=True, help="Print the ledger as CSV.")
@click.option(
    "--sync",
    is_flag=True,
    help="First pull the submission list from Kaggle (scores, uploads made elsewhere).",
)
@click.option(
    "--plot", is_flag=True, help="Also write submissions/scores.png (validation vs public score over time)."
)
@competition_option
def scores(as_json: bool, as_csv: bool, sync: bool, plot: bool):
    """Every submission with its validation accuracy and leaderboard score (the ledger)."""
    if as_json and as_csv:
        raise KitError("choose one of --json and --csv")
    if sync:
        synced = ledger.sync_from_kaggle()
        if synced.warning is not None:
            click.echo(str(synced), err=True)
        elif not (as_json or as_csv):
            click.echo(str(synced))
    if as_json:
        click.echo(ledger.read_all().to_json(orient="records", indent=2))
    elif as_csv:
        click.echo(ledger.read_all().to_csv(index=False), nl=False)
    else:
        df = ledger.table()
        click.echo(
            "no submissions yet (`kit submit`)"
            if df.empty
            else df.to_string(index=False, na_rep="-", float_format=lambda x: f"{x:.5f}")
        )
    if plot and not ledger.read_all().empty:
        path = ledger.plot()
        if not (as_json or as_csv):
            click.echo(f"plot: {path}")


@cli.command()
@click.option(
    "--top", type=click.IntRange(min=1), default=10, show_default=True, help="How many leading teams to show."
)
@competition_option
def leaderboard(top: int):
    """The competition leaderboard's top teams and our rank."""
    for line in submit_mod.standing(top):
        click.echo(line)


# ============================================================================ report
# (owned by kit/report/)


@cli.command()
@click.argument("run_refs", metavar="[RUN]...", nargs=-1)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder to write the report into (must not exist or be empty). [default: reports/<UTC timestamp>]",
)
@data_dir_option
def report(run_refs: tuple[str, ...], out: Path | None):
    """Write an HTML report (curves, confusion, worst errors, calibration, leaderboard history).

    RUN is a run folder, a run name under runs/, a model name (its latest finished run) or a
    group (its out-of-fold ensemble); by default the latest finished run of each model. Prints
    the path of index.html, which opens from disk in any browser.
    """
    refs = [_run_or_group(r).path if groups.is_group(r) else r for r in run_refs]
    click.echo(report_mod.build(refs or None, out))


# ============================================================================ local Kaggle service
# (owned by kit/emulator/)


@cli.command()
@click.option(
    "--fixture",
    "use_fixture",
    is_flag=True,
    default=True,
    help="Serve the fixture competition built from scikit-learn's digits. [default]",
)
@click.option(
    "--zip",
    "zip_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Serve this competition zip instead (needs --answers).",
)
@click.option(
    "--answers",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The answer key (ImageId,Label) submissions to --zip are scored against.",
)
@click.option("--slug", default=None, help="Competition slug to serve. [default: the fixture's]")
@click.option("--port", type=int, default=0, show_default=True, help="Port on 127.0.0.1 (0: a free one).")
@click.option(
    "--daily-limit", type=int, default=5, show_default=True, help="Submissions allowed per UTC day."
)
@click.option(
    "--scoring-delay",
    type=float,
    default=2.0,
    show_default=True,
    help="Seconds a submission stays PENDING before it is scored.",
)
@click.option("--verbose", is_flag=True, help="Log every request the client sends (to stderr).")
def emulator(
    use_fixture: bool,
    zip_path: Path | None,
    answers: Path | None,
    slug: str | None,
    port: int,
    daily_limit: int,
    scoring_delay: float,
    verbose: bool,
):
    """Run a local Kaggle competition service in the foreground (Ctrl-C stops it).

    The official kaggle client, and so every kit command, talks to it once you paste the
    printed `export` lines into another shell: offline demos, no Kaggle account needed.
    """
    zip_path, answers, slug = emulator_competitions.competition_files(zip_path, answers, slug)
    emu = emulator_server.Emulator(
        zip_path,
        answers,
        slug=slug,
        daily_limit=daily_limit,
        scoring_delay_s=scoring_delay,
        port=port,
        verbose=verbose,
    )
    emulator_server.serve(emu, echo=click.echo)


# ============================================================================ remote training
# (owned by kit/remote/run.py)


@cli.group(cls=KitGroup)
def remote():
    """Train on Kaggle's GPUs; the runs come back as ordinary runs under runs/."""


# `kit train --folds`'s options but the pseudo-labels: a teacher's runs would have to travel to
# Kaggle
REMOTE_GROUP_KEYS = GROUP_KEYS  # folds, repeats, fold_seed, same_folds, jobs: GROUP_OPTIONS[:5]


def _remote_folds(shape: dict) -> remote_mod.Folds | None:
    """The group `kit remote train --folds K` trains, or None without --folds (whose companions
    are then refused)."""
    if shape["folds"] is not None:
        return remote_mod.Folds(**shape)
    if _given(list(REMOTE_GROUP_KEYS)):
        raise KitError(
            "--repeats, --fold-seed, --same-folds and --jobs go with --folds K (a cross-validated group)"
        )
    return None


def _remote_train_command(model: models.Model) -> None:
    """`kit remote train <model>`: the options of `kit train <model>`, plus the job's shape."""

    def command(seeds: str, kernels: int, accelerator: str, preset: str | None, **hparams):
        folds = _remote_folds({k: hparams.pop(k) for k in REMOTE_GROUP_KEYS})
        base_seed = folds is not None and not _given(["seeds"])  # the preset's seed
        seed_list = [] if base_seed else remote_mod.parse_seeds(seeds)
        remote_mod.train(
            model.name, seed_list, kernels, accelerator, preset, hparams, echo=click.echo, folds=folds
        )

    command.__doc__ = (
        f"Train {model.summary} on Kaggle: push the kernels, wait, install each seed's run.\n\n"
        f"Defaults to a GPU budget (preset best, float32); every option of "
        f"`kit train {model.name}` can be set. `kit remote pull` reattaches after Ctrl-C. "
        f"With --folds K, a cross-validated group (as `kit train {model.name} --folds K`): its "
        f"members split over the kernels, installed as a local group (`kit ensemble GROUP`)."
    )
    command.__name__ = f"remote_train_{model.name}"
    options = [
        click.option(
            "--seeds",
            default="1-15",
            show_default=True,
            help="Seeds to train: 1-15, 0,3,7, 2-4,9. With --folds one seed S, the group's base "
            "seed (member m trains with S + m; default: the preset's seed).",
        ),
        click.option(
            "--kernels",
            type=click.IntRange(min=1),
            default=3,
            show_default=True,
            help="Kernels to split them over.",
        ),
        click.option(
            "--accelerator",
            type=click.Choice(remote_mod.ACCELERATORS),
            default=remote_mod.GPU,
            show_default=True,
            help="Kaggle machine: NvidiaTeslaT4 (GPU T4 x2) or none (CPU).",
        ),
        click.option(
            "--preset", default=None, metavar="NAME", help=f"{', '.join(model.presets)}. [default: best]"
        ),
        *_hparam_options(model, skip=("seed",)),  # --seeds says which
        *GROUP_OPTIONS[: len(REMOTE_GROUP_KEYS)],
        data_dir_option,
        competition_option,
    ]
    remote_train.command(model.name)(_with_options(command, options))


@remote.group("train", cls=KitGroup)
def remote_train():
    """Train seeds of a model on Kaggle (a private script kernel per group of seeds)."""


for _model in models.MODELS.values():
    _remote_train_command(_model)


@remote.command("status")
@click.argument("job", required=False)
def remote_status(job: str | None):
    """Every remote job (or JOB) and its kernels, as recorded in runs/remote/."""
    for line in remote_mod.status_lines(job):
        click.echo(line)


@remote.command("pull")
@click.argument("job", required=False)
@click.option(
    "--push-held",
    is_flag=True,
    help="Also push the kernels a refusal held back (the GPU quota, or another kernel's push "
    "refused): each is a new Kaggle session.",
)
@data_dir_option
@competition_option
def remote_pull(job: str | None, push_held: bool):
    """Reattach to JOB (default: the newest): push what its train left unpushed, wait, download,
    verify and install its runs. Never pushes a kernel Kaggle already has; held kernels only
    with --push-held. Exits 1 unless the job ends complete."""
    remote_mod.pull(job, echo=click.echo, push_held=push_held)


def main():
    cli(prog_name="kit")


if __name__ == "__main__":
    main()
