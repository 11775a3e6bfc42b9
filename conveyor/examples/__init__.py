"""Example pipelines shipped with Conveyor (also under examples/ in the repository)."""
