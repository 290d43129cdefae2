"""``python -m sklearn_hypothesaes``: the command line (see ``_cli``)."""

import sys

from .app._cli import main

if __name__ == "__main__":
    sys.exit(main())
