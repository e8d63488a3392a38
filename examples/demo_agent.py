#!/usr/bin/env python3
"""The deterministic demo agent (see ralph/demo_agent.py); kept here for scripts that run it
by path. `ralph run --agent demo` runs the same agent from the installed package."""

import sys

from ralph.demo_agent import main

if __name__ == "__main__":
    sys.exit(main())
