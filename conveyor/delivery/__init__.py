"""Delivery: the CI/CD workflows that carry a model from a commit to production (``conveyor init --ci``)."""
