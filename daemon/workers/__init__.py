"""Executing runs on worker processes (decision 0007): the job a worker gets and the records
it sends back (`messages.py`), the worker process itself (`worker.py`, `python -m
ostinato.daemon.workers`), and the daemon's pool of them (`pool.py`)."""
