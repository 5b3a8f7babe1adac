"""`python -m gptlab` runs the command line."""

import sys

from gptlab.cli import main

sys.exit(main())
