"""The enjournal benchmark: ``make bench`` or ``python -m bench --help``."""
