"""The MCP face: pinbase's Organization API as Model Context Protocol tools (Streamable HTTP at
`/mcp`), over the same bearer tokens, permissions and use cases as the HTTP routes."""
