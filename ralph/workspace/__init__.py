"""Where agents work and how their commits land: the single checkout (`checkout`), per-worker
worktrees (`worktree`), worktrees landing on a git remote (`remote`), over `git` plumbing and the
`mergelock`. Workspaces only do git; the worker holds the claim and hands them a fence."""
