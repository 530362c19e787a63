"""sing-box: Shadowsocks, Trojan, Hysteria2, TUIC, VMess and HTTP/SOCKS5 proxy servers, one
sing-box process per server. The protocols are one table (protocols.py); the stored settings,
secrets and credentials typed models (settings.py); config rendering (config), credentials
(secrets) and self-signed certificates (tls) are pure functions here; the process and its APIs
live next to them."""
