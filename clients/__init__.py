"""Clients of the daemon: the Python clients and the `ostinato` command."""
