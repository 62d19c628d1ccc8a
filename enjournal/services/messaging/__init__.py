"""Messaging between organisations (domain.md section 5): the address register, referrals,
discharge summaries and dialogue messages as FHIR messages (and their Norwegian XML), the
application receipt, and delivery that loses nothing and duplicates nothing.

- ``addresses``: the address register (communication parties by HER-id, what they receive)
- ``rules``: message types, envelopes, receipts and their codes (no I/O)
- ``sending``: ``$process-message`` and ``send`` (ledger + outbox in one transaction)
- ``relay``: outbox -> transport, deleted only when confirmed
- ``transport``: RabbitMQ (aio-pika) or a queue in the database, behind one interface
- ``receiving``: inbox (deduplication), checks, import into the record, automatic receipts
- ``boxes``: the sender's and receiver's views, the receipt a person sends
- ``edi``: the EDI 2.0-style REST facade; ``xml``: MsgHead, Dialogmelding, AppRec XML

See docs/messaging.md.
"""

from __future__ import annotations

from enjournal.services import Job


def register(platform) -> list[Job]:
    """Add the messaging operations (and the EDI facade when serving); return the jobs."""
    from enjournal.services.messaging import api, jobs

    api.register(platform)
    if platform.serving:
        from enjournal.services.messaging.web import routes

        platform.routes.extend(routes(platform))
    return jobs.all_jobs(platform)
