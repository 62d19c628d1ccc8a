"""Kjernejournal's FHIR operations, one module per group; ``api.Service`` joins them."""
