"""`ostinato mcp --http HOST:PORT`: MCP's Streamable HTTP transport (revisions 2025-11-25,
2025-06-18 and 2025-03-26) in front of the home's daemon. Each MCP session is one connection
to the daemon's unix socket, whose MCP face keeps the session's state; this package only
carries messages between HTTP exchanges and that connection, and enforces the transport's
rules (Origin, token, sessions, protocol version header). docs/agents-http.md."""
