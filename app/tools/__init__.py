"""The MCP tools: thin functions over upstream clients, each declared by one `ToolSpec`; policy is middleware."""
