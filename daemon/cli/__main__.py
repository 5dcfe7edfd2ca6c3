"""`python -m daemon.cli`: the `memoryd` command."""

import sys

from daemon.cli.main import main

sys.exit(main())
