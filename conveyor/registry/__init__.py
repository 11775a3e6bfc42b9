"""The model registry: versions, aliases, approvals, rollback, lineage and the audit log."""

from conveyor.registry.refs import ModelRef, parse_ref
from conveyor.registry.registry import Lineage, ModelRegistry

__all__ = ["Lineage", "ModelRef", "ModelRegistry", "parse_ref"]
