"""Docker runtime: each server's engine runs in a container through the Docker Engine API.

One container per server, named `vpn-SERVER-HOMEID` (HOMEID: a short hash of the manager's home,
so two homes on one Docker engine never touch each other's containers) and labelled
`vpn-manager.server`, `vpn-manager.engine` and `vpn-manager.home`. The containers of one home share
one bridge network, `vpn-manager-HOMEID`, with inter-container traffic off: the engines' TCP
control APIs (which listen on every address inside the container) are reachable from the host
only, where they are published on 127.0.0.1 and kept to our uid by the firewall
(engines/guard.py); Xray's API is a unix socket in the server's private directory, mounted
read-write. Restart policy unless-stopped: a container that dies is
started again by Docker; `vpn serve` recreates one that is gone.

On this machine's engine (unix://, tcp:// to loopback) the container mounts the server's
rendered-config directory and its keys directory read-only at the same paths as on the host (a
directory, not the file: an atomic rename on the host shows in the container). On a remote engine
(ssh://, see is_remote) nothing is mounted: the same directories are copied into the container
before it starts and again after every change (copy_in), and the engine's socket and the control
API ports are reached through an ssh tunnel (ssh.py).

Stopping a server removes its container (a start always creates it from the current config); its
logs are kept first in the native log file, so `vpn server logs` still has them. The `docker`
SDK is imported only in this package, and only when a Docker server is touched.

Modules: runtime.py (the Runtime contract for servers in containers), containers.py (this
home's containers on one engine through the Engine API), logs.py (a container's logs, kept and
followed), network.py (the home's network), views.py (a container's state and stats), hosts.py
(which engine a host names, connecting to it, the engines this home has used), ssh.py (the
tunnel to a remote engine), options.py (names, labels, container options, Compose services),
exec.py (commands run in a container), images.py (what each engine's image needs), census.py
(this home's containers on every engine and who owns them).
"""
