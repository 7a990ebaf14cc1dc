"""Apps the harness runs in separate processes (workers, the webhook server)."""
