"""`ralph web`: the operator's dashboard, a Starlette app over any store (optional extra `web`).

Nothing here is imported by the hot CLI commands; `ralph.cli.web` imports it inside the command.
"""
