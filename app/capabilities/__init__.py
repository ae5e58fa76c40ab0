"""Cross-cutting capability policy as composable FastMCP middleware."""
