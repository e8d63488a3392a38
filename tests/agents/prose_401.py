#!/usr/bin/env python3
"""Zoo agent: writes out/<task>.txt and talks about HTTP auth and rate-limit errors it "fixed".

Imitates an agent working on an API whose prose mentions 401/403/429 and error class names:
text output is never a control channel, so this task must simply succeed.
"""

import os
import sys
from pathlib import Path

sys.stdin.read()
task = os.environ["RALPH_TASK_ID"]
target = Path(f"out/{task}.txt")
target.parent.mkdir(parents=True, exist_ok=True)
target.write_text(f"{task}: auth checks\n")
print("I added a check that returns 401 Unauthorized and 429 Too Many Requests for anonymous users")
print("Return 403 Forbidden when the token lacks the admin scope")
print("raise AuthenticationError")
print("handle the permission_error case")
print("handled the rate limit exceeded case")
