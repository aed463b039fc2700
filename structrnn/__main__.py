"""``python -m structrnn ...`` runs the ``structrnn`` command (:func:`structrnn.cli.main`) and
exits with its return code."""

from __future__ import annotations

import sys

from structrnn.cli import main

if __name__ == "__main__":
    sys.exit(main())
