"""The `asyncjobs` command."""
