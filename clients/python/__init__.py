"""Python clients of the Ostinato daemon: `AsyncClient` and its blocking twin `Client`."""

from ostinato.protocol.errors import ErrorCode, RpcError

from .client import AsyncClient, DaemonConnectionError
from .sync import Client

__all__ = ["AsyncClient", "Client", "DaemonConnectionError", "ErrorCode", "RpcError"]
