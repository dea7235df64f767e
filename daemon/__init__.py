"""The Ostinato daemon process: server, services, and (later) engine and store."""
