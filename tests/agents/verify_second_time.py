#!/usr/bin/env python3
"""Verify command: fails (printing VERIFY-SAYS-NO) the first time, passes after that.

The marker lives in argv[1], outside the repository, so it is never committed.
"""

import sys
from pathlib import Path

marker = Path(sys.argv[1])
if not marker.exists():
    marker.write_text("seen\n")
    print("VERIFY-SAYS-NO: test_parser failed")
    sys.exit(1)
print("all good")
