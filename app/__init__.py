"""mcp-tee: an MCP server whose credentials a cloud operator cannot read."""

__version__ = "0.1.0"
SERVER_NAME = "mcp-tee"
