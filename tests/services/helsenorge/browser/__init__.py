"""Browser tests of the helsenorge portal (Playwright, Debian chromium, axe-core)."""
