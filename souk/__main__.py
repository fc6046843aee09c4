"""`python -m souk` runs the CLI."""
from souk.cli import main

if __name__ == "__main__":  # not when a worker process (forkserver, spawn) imports the main module again
    main()
