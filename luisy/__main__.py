"""``python -m luisy`` runs the luisy command."""

import sys

from luisy.cli import main

sys.exit(main())
