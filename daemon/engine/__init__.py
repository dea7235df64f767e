"""The pipeline engine: parse, transform, validate, plan and execute pipelines.

Knows nothing of JSON-RPC; the services wire it to the daemon and the store.
"""
