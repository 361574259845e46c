"""The ``imnet`` command line. This module only wires: each command parses its options and calls one
library function that tests and Python users call directly. Results go to stdout; progress bars and
logs go to stderr. A user error (:class:`imnet.errors.ImnetError`) is printed as one line and exits
with status 2; ``--debug`` shows its traceback.
"""
from __future__ import annotations

import sys

import click

from imnet.errors import ImnetError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--debug", is_flag=True, help="Show the full traceback of user errors too.")
@click.version_option(package_name="imnet")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """imnet: ImageNet (ILSVRC2012) prep, loaders, training and evaluation.

    \b
    imnet prep  --src /data/tars --dst /data/imagenet   # verify, extract, reorganize, manifests
    imnet train --arch vanillanet_9 --data /data/imagenet
    imnet eval  --crops 10 --real-labels --data /data/imagenet
    imnet demo  --out demo_out                         # the whole pipeline on generated data
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


@cli.command()
def info() -> None:
    """Print versions (imnet, Python, torch, torchvision, DALI, PIL) and the hardware seen."""
    from imnet.info import collect_info

    for key, value in collect_info().items():
        click.echo(f"{key + ':':<14}{value}")


# --- prep, verify, fake: data preparation (issue 3) -------------------------------------------------

# --- zoo (issue 4, 8) -------------------------------------------------------------------------------

# --- bench: loaders and others (issue 5) -------------------------------------------------------------

# --- eval (issue 6) -----------------------------------------------------------------------------------

# --- train, demo (issue 7) ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: runs the group, turning user errors into one line and exit 2."""
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        # standalone_mode=False returns ctx.exit()'s code instead of exiting: pass it on.
        code = cli.main(args=argv, prog_name="imnet", standalone_mode=False)
    except ImnetError as err:
        if debug:
            raise
        click.echo(f"imnet: error: {err}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("imnet: aborted", err=True)
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        click.echo("imnet: interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
