"""famipose command line: thin wrappers around library functions."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="FAMI-Pose video pose estimation.")

# -- commands are registered below, one thin function each --


if __name__ == "__main__":
    app()
