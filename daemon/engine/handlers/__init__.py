"""Node handlers: one module per handler type, and the registry that resolves them."""
