"""`python -m lionsearch` is the `lionsearch` command."""
import sys

from .cli import main

sys.exit(main())
