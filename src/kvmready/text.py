"""Text from hosts and reports, made safe to write."""


def clean_text(text: str) -> str:
    """Text that any UTF-8 writer accepts: undecodable bytes (surrogate escapes) become U+FFFD."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return "".join("\ufffd" if "\ud800" <= char <= "\udfff" else char for char in text)
