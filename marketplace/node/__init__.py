"""The contributor node program (`datamarket-node`, `python -m marketplace.node`)."""
