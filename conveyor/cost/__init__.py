"""Storage lifecycle and cost: gc of what nothing keeps, bytes by owner, right-sizing, estimates.

One module per idea: ``gc.py`` (what keeps an artifact, and the collection), ``storage.py``
(bytes by pipeline, model, dataset), ``usage.py`` (what steps and servers used), ``rightsizing.py``
(requested vs used, with a recommendation), ``report.py`` (estimated cost), ``prices.py`` with the
shipped, dated ``prices.yaml``. Nothing is imported here, so ``conveyor --help`` stays fast.
"""
