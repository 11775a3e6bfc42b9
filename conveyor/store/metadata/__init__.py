"""store/metadata."""
