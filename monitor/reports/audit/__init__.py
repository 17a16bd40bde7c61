"""`ollama-monitor audit`: is this host exposed? Sockets, services, proxy, firewall and the stored requests."""
