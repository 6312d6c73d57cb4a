"""``python -m soroban_sandbox``: same as the ``soroban-sandbox`` entry point."""

from .main import main

if __name__ == "__main__":
    main()
