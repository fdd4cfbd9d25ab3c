"""The shared vocabulary of the harness: errors and exit codes, parameters and the one spec grammar,
geometry, threat tiers, seeds, devices, provenance, the model catalog and the result types.

It imports nothing else of ours, and nothing heavy at import time (no torch): attacks/, metrics/ and
reports/ import only from here (attacks also from redteam.anonymizers), and the CLI starts fast.
"""
