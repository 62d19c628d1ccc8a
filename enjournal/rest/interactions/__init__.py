"""One FHIR interaction per module; each module's docstring links its spec section."""
