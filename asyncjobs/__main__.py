"""`python -m asyncjobs` is the `asyncjobs` command."""

from .cli.main import main

main()
