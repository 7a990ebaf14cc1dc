"""Webhook sources: verify a provider's request and turn it into an event."""
