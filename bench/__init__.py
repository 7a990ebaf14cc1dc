"""The dataflows benchmark: dataflows side by side with DBOS Transact and Absurd.

Run it with ``bench/run`` (see docs/benchmarks.md).
"""
