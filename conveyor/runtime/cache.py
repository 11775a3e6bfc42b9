"""Cache keys: what makes two step calls the same call."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import orjson

CACHE_FORMAT = "1"


def compute_cache_key(*, step: str, code_hash: str, inputs: Mapping[str, object],
                      outputs: tuple[str, ...]) -> str:
    """Hash the step's normalised code, its outputs' names and its inputs' fingerprints.

    ``inputs`` maps an input name to a JSON-able fingerprint built from content hashes and
    materializer versions (see ``runtime.inputs``), so equal data under a new artifact id still hits.
    """
    payload = {"v": CACHE_FORMAT, "step": step, "code": code_hash, "outputs": list(outputs), "inputs": inputs}
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()
