"""``python -m noisesim``: the console script.

Guarded: spawned worker processes (``generate --workers``) re-import the main module as ``__mp_main__``,
and must not run the command again.
"""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
