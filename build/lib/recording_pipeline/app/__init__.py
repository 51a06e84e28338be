"""The handlers: webhook, worker, and the streaming copy they drive."""
