"""Remediation texts of the exposure audit: the concrete commands and snippets that close each gap.

Kept apart from the checks so the wording is reviewed in one place. Functions take the port (and an
address where the fix names one); the texts are ours, but an address passed in may come from logs,
so the CLI sanitises remediation text like everything else.
"""

from __future__ import annotations


def bind(port: int) -> str:
    """Bind Ollama to loopback (systemd, Docker, desktop app)."""
    return (
        f"Bind Ollama to 127.0.0.1 (or to one private/VPN address) instead of every interface:\n"
        f"  sudo systemctl edit ollama      # add these two lines, save, then:\n"
        f"    [Service]\n"
        f'    Environment="OLLAMA_HOST=127.0.0.1:{port}"\n'
        f"  sudo systemctl restart ollama\n"
        f'  Docker: docker run -p 127.0.0.1:{port}:11434 ... (compose: ports: ["127.0.0.1:{port}:11434"])\n'
        f'  Desktop app: turn off "Expose Ollama to the network" in Settings.'
    )


def docker(container_port: str, host_port: str) -> str:
    """Publish a container's port on loopback only."""
    return (
        f"Publish the port on loopback only (Docker's published ports bypass ufw rules):\n"
        f"  docker run -p 127.0.0.1:{host_port}:{container_port} ...   (not -p {host_port}:{container_port})\n"
        f'  compose: ports: ["127.0.0.1:{host_port}:{container_port}"]\n'
        f"Other machines then go through an authenticating reverse proxy with TLS on the host."
    )


def proxy(port: int) -> str:
    """An nginx server block: TLS, basic auth, rate limit, Host header Ollama accepts."""
    return (
        "Put an authenticating reverse proxy with TLS in front, e.g. nginx:\n"
        "  # in http { }:\n"
        "  limit_req_zone $binary_remote_addr zone=ollama:10m rate=5r/s;\n"
        "  server {\n"
        "      listen 443 ssl;\n"
        "      server_name ollama.example.com;\n"
        "      ssl_certificate     /etc/letsencrypt/live/ollama.example.com/fullchain.pem;\n"
        "      ssl_certificate_key /etc/letsencrypt/live/ollama.example.com/privkey.pem;\n"
        '      auth_basic "Ollama";\n'
        "      auth_basic_user_file /etc/nginx/ollama.htpasswd;   # htpasswd -B -c /etc/nginx/ollama.htpasswd alice\n"
        "      location / {\n"
        "          limit_req zone=ollama burst=20 nodelay;\n"
        f"          proxy_pass http://127.0.0.1:{port};\n"
        f"          proxy_set_header Host localhost:{port};\n"
        "          proxy_set_header X-Forwarded-For $remote_addr;\n"
        "          proxy_buffering off;\n"
        "          proxy_read_timeout 600s;\n"
        "      }\n"
        "  }\n"
        "Caddy: a site block with a host name (automatic HTTPS), basic_auth and reverse_proxy 127.0.0.1:"
        f"{port}."
    )


def firewall(port: int) -> str:
    """Restrict the port with ufw or nftables, or keep it on a VPN."""
    return (
        f"Restrict the port with a firewall (allow your network, deny the rest), or reach it only over a VPN:\n"
        f"  ufw allow from 192.168.1.0/24 to any port {port} proto tcp && ufw deny {port}/tcp\n"
        f"  nft add table inet ollama\n"
        f"  nft add chain inet ollama input '{{ type filter hook input priority -10; }}'\n"
        f"  nft add rule inet ollama input tcp dport {port} ip saddr != {{ 127.0.0.0/8, 192.168.1.0/24 }} drop\n"
        f"  nft add rule inet ollama input tcp dport {port} ip6 saddr != ::1 drop\n"
        f"  VPN: bind OLLAMA_HOST to the WireGuard/Tailscale address and allow only that interface."
    )


def approve(ip: str) -> str:
    """Approve a known source in this monitor, or block it."""
    return (
        f"If the source is yours, approve it so the monitor stops flagging it:\n"
        f"  ollama-monitor sources approve {ip}\n"
        f"  (or add its network to [known] allow in the config). If it is not, block it at the firewall and\n"
        f"  require authentication at the proxy; rate-limit what remains (nginx limit_req)."
    )


def least_privilege(port: int) -> str:
    """Keep management endpoints to admins."""
    return (
        "Give each service least privilege: only admins (list them in [known] admins) may pull, push,\n"
        "create, copy or delete models. At the proxy, e.g. nginx:\n"
        "  location ~ ^/api/(pull|push|create|copy|delete|blobs) {\n"
        "      allow 192.168.1.10;   # the admin host\n"
        "      deny all;\n"
        f"      proxy_pass http://127.0.0.1:{port};\n"
        "  }\n"
        "and give client applications their own credentials, limited to inference paths."
    )


ORIGINS = (
    "Set OLLAMA_ORIGINS to the exact origins that need browser access (e.g. http://localhost:3000), or unset it:\n"
    '  sudo systemctl edit ollama   ->  Environment="OLLAMA_ORIGINS=http://localhost:3000"\n'
    "OLLAMA_ORIGINS is CORS only, not authentication: '*' lets any web page a user opens call the API."
)

NO_DATA = (
    "Configure [[sources]] (the Ollama journal or log, and the reverse proxy's access log) and run\n"
    "`ollama-monitor daemon` so the next audit can use the request history."
)
