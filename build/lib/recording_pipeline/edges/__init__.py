"""The edges: ACS, the archive, the queue, delivery auth, retries, telemetry."""
