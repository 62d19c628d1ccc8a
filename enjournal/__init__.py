"""enjournal: an open national e-health platform on HL7 FHIR R4."""
