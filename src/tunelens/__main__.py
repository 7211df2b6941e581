"""``python -m tunelens``: the same program as the installed ``tunelens`` (also how the allocator re-exec starts it again)."""

from tunelens.cli import entry

if __name__ == "__main__":
    entry()
