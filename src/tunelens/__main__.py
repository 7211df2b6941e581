"""``python -m tunelens`` (also how the allocator re-exec starts the CLI again)."""

from tunelens.cli import main

if __name__ == "__main__":
    main()
