"""The operator's library: set up a project, move plans in and out, and see what the loop did.

`init` (ralph init), `importers` / `exporters` (prd.json, Markdown checklists, JSONL),
`status` (a snapshot of the store), `stats` (attempt statistics), `logs` (an attempt's run
folder as readable turns) and `tree` (dependency and parent structure). The CLI renders them.
"""
