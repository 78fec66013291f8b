"""Benchmarks of mfsample: ``python -m benchmarks`` runs the suite (:mod:`benchmarks.run`).

``step.py`` (the cost of one kernel step) and ``reaction.py`` (the Fisher–Rao reaction against
the transport step) are standalone studies; :mod:`benchmarks.alternatives` holds the reference
implementations the suite compares ``mf.simulate`` with; :mod:`benchmarks.probes` the
measurements that need a fresh process (compile time, peak memory).  See ``benchmarks/README.md``.
"""
