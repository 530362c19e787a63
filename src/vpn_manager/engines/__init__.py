"""Engines: the real VPN programs we configure and supervise (Xray first)."""
