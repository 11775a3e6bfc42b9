"""Serving: one server for every client contract, and batch scoring."""
