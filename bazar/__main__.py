"""`python -m bazar ...` is the `bazar` command."""
import sys

from bazar.cli import main

sys.exit(main())
