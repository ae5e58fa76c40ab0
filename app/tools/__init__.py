"""The MCP tools: thin functions over upstream clients; policy lives in app/capabilities."""
