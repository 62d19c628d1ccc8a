"""FEST, the national drug catalogue (DMP, NLOD licence), inside the e-resept service:
a streaming loader for the M30 XML file, packages and interactions in the store, and the
catalogue interface prescribing and dispensing use (``catalogue.py``).  See docs/fest.md."""
