"""Xray: VLESS+REALITY servers. Config rendering, the engine process, and its gRPC API."""
