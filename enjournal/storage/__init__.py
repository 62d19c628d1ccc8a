"""Storage: the repository seam (``repository``), the store (unit of work over FHIR resources)
with its SQL backends, and the pure-Python memory store."""

from enjournal.storage.base import (
    SearchResult,
    StoredResource,
    database_error,
    storage_unavailable,
)
from enjournal.storage.memory import MemoryStore, MemoryTransaction
from enjournal.storage.repository import Repository, RepositoryStore
from enjournal.storage.store import Store, Transaction, open_store

__all__ = [
    "MemoryStore",
    "MemoryTransaction",
    "Repository",
    "RepositoryStore",
    "SearchResult",
    "Store",
    "StoredResource",
    "Transaction",
    "database_error",
    "open_store",
    "storage_unavailable",
]
