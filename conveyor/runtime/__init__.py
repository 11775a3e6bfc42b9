"""The engine and its client: running pipelines, resuming them, reading what happened."""
