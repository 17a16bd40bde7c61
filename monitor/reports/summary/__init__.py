"""The weekly usage summary: build it from the store, render it (text, Markdown, HTML, JSON), send it."""
