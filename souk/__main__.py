"""`python -m souk` runs the CLI."""
from souk.cli import main

main()
