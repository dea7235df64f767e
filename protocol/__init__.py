"""The Ostinato contract: message models, error codes, the method registry and the wire codec.

Imports nothing else of Ostinato and does no I/O, so clients, the daemon and tools can all
depend on it.
"""

PROTOCOL_VERSION = "0.1"
