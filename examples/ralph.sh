#!/bin/bash
# RALPH: Run Agent Loop Per Host, the seed's bash loop with `ralph` in place of `tx`.
# A fresh agent per task; the agent command reads the prompt on stdin.
#
#   AGENT_CMD="claude --print --dangerously-skip-permissions" examples/ralph.sh
#
# Default agent: the offline demo agent. `ralph run` does the same and more (leases held while
# the agent works, retries with backoff, timeouts, verify, cost caps, clean stop on SIGTERM);
# this script is kept as the baseline its benchmark compares against.
set -u

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
AGENT_CMD="${AGENT_CMD:-python3 \"$HERE/demo_agent.py\"}"  # a shell command line

while true; do
  TASK=$(ralph ready --json --limit 1 | jq -r '.[0].id')
  [ -z "$TASK" ] || [ "$TASK" = "null" ] && break

  # Fresh agent instance for each task
  export RALPH_TASK_ID="$TASK"
  echo "Read CLAUDE.md. Your task: $TASK. Run ralph show $TASK, implement it, then ralph done $TASK" \
    | eval "$AGENT_CMD"

  git add -A && git commit -q -m "Complete $TASK"
  ralph done "$TASK" > /dev/null
done
