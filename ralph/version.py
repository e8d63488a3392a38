"""The package version, in a module of its own so the store can name it without importing
ralph (whose __init__ imports the store)."""

__version__ = "0.4.0"  # also the package version (pyproject.toml); CHANGELOG.md says what changed
