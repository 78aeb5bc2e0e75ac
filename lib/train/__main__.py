"""`python -m lib.train ...`: the command line lives in lib/cli.py (an entry point above train)."""

from lib.cli import main

raise SystemExit(main())
