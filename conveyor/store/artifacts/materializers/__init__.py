"""store/artifacts/materializers."""
