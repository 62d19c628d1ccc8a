"""``GET Patient/[id]/$summary``: the signed IPS document (``summary.py``, ``signing.py``),
and ``GET /$document-signing-key``: the public key (JWKS) that verifies it."""

from __future__ import annotations

import contextlib
import gc
from datetime import datetime

import orjson

from enjournal.fhir import jsonio
from enjournal.rest.message import FhirResponse
from enjournal.services.kjernejournal import records, rules, signing, summary
from enjournal.services.kjernejournal.operations.base import ServiceBase


class DocumentOperations(ServiceBase):
    async def summary(self, request, repo) -> FhirResponse:
        tx = repo.trusted  # its own access rules decide, below
        patient_id = request.path[1]
        # The access rule first: the same answer whether or not the patient exists.
        access = await self.access(request, tx, patient_id, "$summary")
        stored = await tx.read("Patient", patient_id)
        now = self.now()
        privacy, _ = await records.privacy(tx, patient_id)
        body = await self.document(tx, stored, access, now, privacy)
        await self.audit(
            request,
            tx,
            patient_id,
            access,
            action="R",
            interaction="$summary",
            refs=[f"Patient/{patient_id}"],
        )
        return FhirResponse(200, body)

    async def document(
        self, tx, stored_patient, access: rules.Access, now: datetime, privacy=None
    ) -> bytes:
        """The signed document, serialised (built cold on every call: no cache).

        The rows are read first, as bytes (what they refer to is found in the bytes); then
        parsing, building, encoding and signing run in one block without cyclic garbage
        collection, and every object they made is freed before collection resumes."""
        found: dict[bytes, tuple] = {}  # stored bytes -> (reference tokens, references)
        by_tokens: dict[tuple, set] = {}  # most rows name the same few references

        def scan(content: bytes) -> bytes:
            if content not in found:
                tokens = summary.reference_tokens(content)
                if tokens is None:
                    refs = summary.referenced(content)
                else:
                    key = tuple(tokens)
                    refs = by_tokens.get(key)
                    if refs is None:
                        refs = by_tokens[key] = summary.referenced(content, tokens)
                found[content] = (tokens, refs)
            return content

        def outside(contents) -> set[tuple[str, str]]:
            return {r for c in contents for r in found[c][1] if r[0] in records.SHARED_TYPES}

        patient = scan(stored_patient.content)
        rows = [scan(r.content) for r in await records.patient_rows(tx, stored_patient.id)]
        shared = await records.shared(tx, outside([patient, *rows]), parse=scan)
        second = outside(shared.values()) - set(shared)
        if second:  # one level further: a PractitionerRole's practitioner
            shared.update(await records.shared(tx, second, parse=scan))
        with _no_collection():
            return self._signed(patient, rows, shared, found, access, now, privacy)

    def _signed(self, patient, rows, shared, found, access, now, privacy=None) -> bytes:
        """Parse, build, encode and sign (no I/O).  Returns only bytes, so the tens of
        thousands of dicts made here are freed by reference counting on return."""
        raw: dict[int, bytes] = {}  # stored bytes by id() of the parsed dict
        refs: dict[int, set[tuple[str, str]]] = {}  # what each refers to, same key
        tokens: dict[int, list[bytes] | None] = {}  # its reference tokens, same key

        def parsed(content: bytes) -> dict:
            resource = jsonio.loads(content)  # decimals as written: they are signed
            key = id(resource)
            raw[key] = content
            tokens[key], refs[key] = found[content]
            return resource

        document = summary.build(
            parsed(patient),
            [parsed(content) for content in rows],
            {ref: parsed(content) for ref, content in shared.items()},
            now=now,
            withheld=access.withheld,
            server=self.server_device(),
            raw=raw,
            refs=refs,
            privacy=privacy,
        )
        body, canonical = summary.encode(document, raw, tokens)
        device_url = document.entries[-1][0]
        signature = signing.signature_of(
            canonical, self.key, document.head["timestamp"], {"reference": device_url}
        )
        return summary.with_signature(body, signature)

    async def signing_key(self, request, repo) -> FhirResponse:
        body = orjson.dumps(signing.jwks_of(self.key))
        return FhirResponse(200, body, {"Content-Type": "application/jwk-set+json"})


@contextlib.contextmanager
def _no_collection():
    """No cyclic garbage collection inside this block.  A document allocates tens of
    thousands of dicts and lists, which trigger collections that scan every live container
    (p95 of one 500-resource document in process 27 -> 12 ms without them).  The objects
    are freed by reference counting when the request ends; collection resumes after the
    block.  Only around code without ``await``, so no other request runs while it is off."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
