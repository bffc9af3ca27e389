"""The ``synthscan`` command line: one verb per module in synthscan/commands, registered explicitly below.

Exit codes: 0 success, 2 bad input or usage (the message names the file and field), 1 unexpected failure.
"""

from __future__ import annotations

import argparse
import sys

from synthscan import __version__
from synthscan.commands import show
from synthscan.commands import reader_study
from synthscan.commands import survival
from synthscan.commands import train, sample, fidelity
from synthscan.commands import ingest
from synthscan.commands import audit
from synthscan.commands import mix
from synthscan.commands import cam, classify, evaluate
from synthscan.commands import phantom
from synthscan.commands import reproduce
from synthscan.errors import BadInputError

COMMANDS = [show, survival, reader_study, train, sample, ingest, audit, mix, classify, cam, evaluate, fidelity, phantom, reproduce]


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own usage errors also exit 2, with our prefix
        self.print_usage(sys.stderr)
        self.exit(2, f"error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="synthscan", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"synthscan {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                       parser_class=_Parser)
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BadInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
