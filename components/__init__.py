"""Pulumi components of the confidential MCP deployment: image, CCE policy, key release, identity, server."""
