"""`python -m asyncjobs` is the `asyncjobs` command."""

from .cli import main

main()
