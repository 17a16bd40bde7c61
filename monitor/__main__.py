"""`python -m monitor` runs the same CLI as `ollama-monitor`."""

from monitor.cli import main

if __name__ == "__main__":
    main()
