"""WireGuard servers: wireguard-go under our supervision, configured with `wg` and `ip`."""
