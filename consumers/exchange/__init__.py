"""Pure reconstruction of an exchange from its events: SSE parsing and response assembly."""
