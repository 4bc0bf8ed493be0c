"""`python -m killreport_assets.simulator`: the ESI simulator without the rest of the CLI."""

import argparse
import sys

from killreport_assets.simulator.cli import configure_parser, run


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m killreport_assets.simulator", description="Simulated ESI."
    )
    configure_parser(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
