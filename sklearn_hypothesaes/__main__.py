"""``sklearn-hypothesaes`` and ``python -m sklearn_hypothesaes``: the command line.

The first argument ``diff``, ``correlations``, ``cluster`` or ``search`` runs an
analysis of the toolkit (see ``app._toolkit_cli``); anything else runs the
main method (see ``app._cli``).
"""

import sys


def main(argv=None) -> int:
    """Dispatch to the toolkit's subcommands or to the main command line."""
    argv = sys.argv[1:] if argv is None else list(argv)
    from .app._toolkit_cli import SUBCOMMANDS

    if argv and argv[0] in SUBCOMMANDS:
        from .app._toolkit_cli import toolkit_main

        return toolkit_main(argv)
    from .app._cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
