"""The JSON-RPC server: connections, dispatch, transports and the daemon's lifetime."""
