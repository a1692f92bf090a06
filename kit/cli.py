"""The `kit` command line: parses options and calls the library. Nothing else lives here.

User errors raised anywhere as `KitError` come out as `Error: <message>`, exit status 1.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from kit import config, runs
from kit.errors import KitError


class KitGroup(click.Group):
    """A click group that turns KitError into a clean `Error: ...` and exit 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except KitError as e:
            raise click.ClickException(str(e)) from None


def _set_env(var: str):
    def callback(ctx, param, value):
        if value is not None:
            os.environ[var] = str(value)
        return value
    return callback


data_dir_option = click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), envvar="KIT_DATA_DIR",
    callback=_set_env("KIT_DATA_DIR"), expose_value=False, is_eager=True,
    help="Data folder (raw CSVs, manifest, cache). Env: KIT_DATA_DIR. [default: ./data]")

competition_option = click.option(
    "--competition", envvar="KIT_COMPETITION", callback=_set_env("KIT_COMPETITION"),
    expose_value=False, is_eager=True, type=click.Choice(sorted(config.COMPETITIONS)),
    help="Competition spec (slug and expected sizes). Env: KIT_COMPETITION. [default: digit-recognizer]")


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
@click.option("--from", "source", type=click.Path(exists=True, path_type=Path),
              help="Use a zip or folder you already have instead of downloading.")
@click.option("--force", is_flag=True, help="Download and verify again even if the data is in place.")
@data_dir_option
@competition_option
def download(source: Path | None, force: bool):
    """Download the competition data with the official kaggle client, verify and unpack it.

    Needs Kaggle credentials (~/.kaggle/kaggle.json, KAGGLE_USERNAME/KAGGLE_KEY or
    KAGGLE_API_TOKEN) and the competition rules accepted on kaggle.com. A second run with
    the data already verified does nothing.
    """
    from kit import data, kaggle_io

    if source is None:
        result = kaggle_io.download(force=force, echo=click.echo)
    else:
        result = data.install(source, force=force, echo=click.echo)
    click.echo(result)


@cli.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to write the fixture competition. [default: .cache/fixture]")
def fixture(out: Path | None):
    """Build the small fixture competition from scikit-learn's digits (for tests and the demo)."""
    from kit import fixture as fx

    path = fx.build(out)
    click.echo(f"fixture competition in {path}")


@cli.command("runs")
@click.option("--model", default=None, help="Only this model's runs.")
@click.option("--all", "show_all", is_flag=True, help="Include unfinished (crashed or running) runs.")
def list_runs(model: str | None, show_all: bool):
    """List training runs with their validation accuracy."""
    found = runs.all_runs(model=model, finished=not show_all)
    if not found:
        click.echo(f"no runs in {config.runs_dir()}")
        return
    for r in found:
        m = r.metrics
        acc = f"{m['val_accuracy']:.4f}" if "val_accuracy" in m else "unfinished"
        click.echo(f"{r.name:45s} {acc}")


# ============================================================================ training

@cli.group(cls=KitGroup)
def train():
    """Train a model; each run writes a folder under runs/."""


# `kit train scratch` (kit.scratch) and `kit train cnn` (kit.cnn) are defined below.

# ---------------------------------------------------------------------------- train scratch
# (owned by the scratch network; see kit/scratch.py)

# ---------------------------------------------------------------------------- train cnn
# (owned by the CNN; see kit/cnn.py)

# ============================================================================ ensemble, submissions, ledger
# (owned by kit/ensemble.py, kit/submit.py, kit/ledger.py)

# ============================================================================ report
# (owned by kit/report.py)

# ============================================================================ local Kaggle service
# (owned by kit/emulator.py)


def main():
    cli(prog_name="kit")


if __name__ == "__main__":
    main()
