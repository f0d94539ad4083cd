"""Run the command line as ``python -m elastic``."""

from __future__ import annotations

from elastic.cli import main

main()
