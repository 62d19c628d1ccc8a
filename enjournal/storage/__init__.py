"""Storage: the store (unit of work over FHIR resources) and its SQL backends."""

from enjournal.storage.base import SearchResult, StoredResource
from enjournal.storage.store import Store, Transaction, open_store

__all__ = ["SearchResult", "Store", "StoredResource", "Transaction", "open_store"]
