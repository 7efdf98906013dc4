"""``python -m tissuegraph`` runs the command line, for environments where the script is not on the PATH."""

import sys

from tissuegraph.cli import main

sys.exit(main())
