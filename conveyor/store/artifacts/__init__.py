"""store/artifacts."""
