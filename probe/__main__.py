"""``python -m probe``: the ``probe`` command without its console script (e.g. to run a
source checkout's package rather than the installed one)."""
import sys

from .cli import main

sys.exit(main())
