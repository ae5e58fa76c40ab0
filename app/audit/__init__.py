"""The audit trail: the hash-chained log, its verifier, redaction, and shipping it off the box."""
