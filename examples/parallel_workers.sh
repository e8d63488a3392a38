#!/usr/bin/env bash
# Three workers drain a queue in parallel: the "Simple Parallel Loop" of the parallel-workers
# example, with `ralph` in place of `tx`.
#
#   examples/parallel_workers.sh                      # 5 tasks T1..T5, 3 workers, scratch repo
#   TASKS=20 WORKERS=3 WORK_SECONDS=0 examples/parallel_workers.sh
#   RALPH_DB=/path/to/ralph.db TASKS=0 examples/parallel_workers.sh   # drain an existing store
#
# Environment: TASKS (tasks to add, default 5), WORKERS (default 3), WORK_SECONDS (simulated
# work per task, default 0.2), RALPH_DB (store to use; default: a new git repo in a temp dir),
# SEED_ORDER=1 (release, then done, exactly as the original; see the note in the loop).
set -euo pipefail

if ! command -v jq >/dev/null 2>&1; then
  echo "error: this example needs jq (install it: apt-get install jq, or brew install jq)" >&2
  exit 2
fi
if ! command -v ralph >/dev/null 2>&1; then
  # Not installed as a console script: run the package from this checkout.
  ralph() { PYTHONPATH="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)${PYTHONPATH:+:$PYTHONPATH}" \
              python3 -m ralph "$@"; }
  export -f ralph
fi

TASKS=${TASKS:-5}
WORKERS=${WORKERS:-3}
WORK_SECONDS=${WORK_SECONDS:-0.2}
SEED_ORDER=${SEED_ORDER:-0}

if [ -z "${RALPH_DB:-}" ]; then
  SCRATCH=$(mktemp -d)
  trap 'rm -rf "$SCRATCH"' EXIT
  git init -q "$SCRATCH"
  cd "$SCRATCH"            # the store is .ralph/ralph.db at the repo's top folder
fi

for i in $(seq 1 "$TASKS"); do
  ralph add "T$i" >/dev/null
done

# Run the workers in parallel
for i in $(seq 1 "$WORKERS"); do
  (
    WORKER="worker-$i"
    while true; do
      # Get next ready task
      TASK=$(ralph ready --json --limit 1 | jq -r '.[0].id')
      { [ -z "$TASK" ] || [ "$TASK" = "null" ]; } && break

      # Try to claim it
      if ralph claim "$TASK" "$WORKER" >/dev/null 2>&1; then
        echo "[$WORKER] Claimed $TASK"

        # Work on task (simulated)
        # In practice: claude -p "Work on $TASK"
        sleep "$WORK_SECONDS"

        if [ "$SEED_ORDER" = 1 ]; then
          # The original order: between these two commands the task is open and unclaimed,
          # so another worker may claim it (the done still happens once).
          ralph claim:release "$TASK" "$WORKER" || true
          ralph done "$TASK" >/dev/null || true
        else
          # Release and mark done in one transaction: `done` ends the claim itself, and
          # --worker refuses if the lease was lost to someone else meanwhile.
          ralph done "$TASK" --worker "$WORKER" >/dev/null || continue
        fi
        echo "[$WORKER] Completed $TASK"
      fi
    done
    echo "[$WORKER] No more tasks"
  ) &
done
wait

echo
echo "Summary:"
ralph list
left=$(ralph list --json | jq '[.[] | select(.status != "done")] | length')
if [ "$left" != 0 ]; then
  echo "error: $left task(s) not done" >&2
  exit 1
fi
echo "All $(ralph list --json | jq length) tasks done."
