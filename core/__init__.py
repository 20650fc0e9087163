"""What every app shares and that depends on no app: error types, the REST error handler, throttles,
log hygiene (scrubbing, client strings in log lines).

The import graph points one way: `core` ← `accounts` ← `devices` ← `relay` ← `wimz` (the project);
tests/test_import_graph.py fails on an import against it.
"""
