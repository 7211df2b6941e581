"""User-facing errors. The CLI prints these as one clear message, never a traceback."""


class TunelensError(Exception):
    """An error caused by the user's input (file, config, model path...), with a clear message."""


class ConfigError(TunelensError):
    """A config file or option is invalid; the message names the bad field."""


# --------------------------------------------------------------------------- input files

SNIFF_BYTES = 1 << 16  # how much of an input file is looked at to tell text from binary


def _open_bytes(path, decompress: bool):
    import gzip

    return gzip.open(path, "rb") if decompress and path.suffix == ".gz" else path.open("rb")


def first_invalid_utf8(path, limit: int | None = None, decompress: bool = True) -> tuple[int, int] | None:
    """(offset, byte) of the first byte of ``path`` that is not UTF-8, or None when the first
    ``limit`` bytes (all of them without a limit) decode. A multi-byte sequence cut by ``limit``
    does not count. ``.gz`` files are looked at decompressed (``decompress``)."""
    import codecs
    from pathlib import Path

    path = Path(path)
    decoder = codecs.getincrementaldecoder("utf-8")()
    fed = 0
    with _open_bytes(path, decompress) as fh:
        while limit is None or fed < limit:
            chunk = fh.read(1 << 20 if limit is None else min(1 << 20, limit - fed))
            base = fed - len(decoder.getstate()[0])  # bytes held back from the previous chunk
            try:
                decoder.decode(chunk, final=not chunk and limit is None)
            except UnicodeDecodeError as exc:
                return base + exc.start, exc.object[exc.start]
            if not chunk:
                break
            fed += len(chunk)
    return None


def _line_of(path, offset: int, decompress: bool) -> int:
    from pathlib import Path

    path = Path(path)
    line, seen = 1, 0
    with _open_bytes(path, decompress) as fh:
        while seen < offset and (chunk := fh.read(min(1 << 20, offset - seen))):
            line += chunk.count(b"\n")
            seen += len(chunk)
    return line


def describe_not_utf8(path, expected: str, decompress: bool = True) -> str:
    """The message for a file that does not decode as UTF-8: where the first bad byte is."""
    found = first_invalid_utf8(path, decompress=decompress)
    if found is None:
        return f"{path} is not UTF-8 text; expected {expected}"
    offset, byte = found
    line = _line_of(path, offset, decompress)
    return f"{path} is not UTF-8 text (byte 0x{byte:02x} at offset {offset}, line {line}); expected {expected}"


def check_input_file(path, *, expected: str, not_found: str = "{path}: no such file", sniff: bool = True,
                     decompress: bool = True):
    """Raise a :class:`TunelensError` naming ``path`` when it cannot be an input data file.

    Checked: it exists (``not_found`` is the message, with ``{path}``), it is a regular file (not
    a directory), it can be opened, and (``sniff``) it is not binary. Binary means: its first
    64 KiB (decompressed for ``.gz`` when ``decompress``) hold NUL bytes (what git and grep look
    for) and bytes that are not UTF-8, together at least 10% of them; the message names the first
    byte that is not UTF-8. Text with a stray NUL or a few stray non-UTF-8 bytes passes, so
    readers that reject single bad rows still can. ``expected`` says what was wanted, e.g.
    "a JSONL/JSON/CSV/Parquet file".
    """
    import zlib
    from pathlib import Path

    path = Path(path)
    if not path.exists():
        raise TunelensError(not_found.format(path=path))
    if path.is_dir():
        raise TunelensError(f"{path} is a directory, expected {expected}")
    if not path.is_file():
        raise TunelensError(f"{path} is not a regular file, expected {expected}")
    try:
        path.open("rb").close()
    except OSError as exc:
        raise TunelensError(f"{path}: cannot read ({exc.strerror})") from None
    if not sniff:
        return path
    try:
        with _open_bytes(path, decompress) as fh:
            head = fh.read(SNIFF_BYTES)
        nuls = head.count(b"\x00")
        not_utf8 = len(head) - len(head.decode("utf-8", "ignore").encode("utf-8")) if nuls else 0
        binary = nuls and not_utf8 and (nuls + not_utf8) * 10 >= len(head)
        bad = first_invalid_utf8(path, limit=SNIFF_BYTES, decompress=decompress) if binary else None
    except (OSError, EOFError, zlib.error):
        return path  # e.g. a corrupt gzip stream: the reader reports it with its own message
    if bad is not None:
        offset, byte = bad
        raise TunelensError(f"{path} is binary, not UTF-8 text (byte 0x{byte:02x} at offset {offset}); "
                            f"expected {expected}")
    return path
