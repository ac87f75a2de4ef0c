"""``python -m luisy_sync``: the luisy-sync command line."""

import sys

from luisy_sync.cli import main

sys.exit(main())
