"""The long-running service: the daemon loop, its periodic jobs, systemd notification, the demo."""
