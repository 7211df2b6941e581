"""``python -m tunelens.train ...``: the train command as a module, for launchers that want one
(``accelerate launch -m tunelens.train ...``, ``torchrun -m tunelens.train ...``)."""

import sys

import typer

from tunelens.errors import TunelensError
from tunelens.train.cli import train_command


def main() -> None:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(train_command)
    try:
        app()
    except TunelensError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
