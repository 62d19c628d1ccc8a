"""The FHIR REST API, independent of HTTP: ``FhirRequest`` in, ``FhirResponse`` out.

``router.handle(request, store)`` picks the interaction (one small module each under
``interactions/``) and turns any ``FhirError`` into an OperationOutcome; the ASGI app in
``enjournal.server`` only adapts HTTP to these objects.
"""
