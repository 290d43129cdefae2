"""``sklearn-hypothesaes`` and ``python -m sklearn_hypothesaes``: the command line.

The first argument ``diff``, ``correlations``, ``cluster`` or ``search`` runs an
analysis of the toolkit (see ``app._toolkit_cli``); anything else runs the
main method (see ``app._cli``, whose ``main`` makes that choice).
"""

import sys


def main(argv=None) -> int:
    """Run the command line; returns the exit status."""
    from .app._cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
