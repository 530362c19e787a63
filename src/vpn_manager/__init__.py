"""vpn-manager: install and run your own VPN servers and keep their users in order."""

__version__ = "0.1.0"
