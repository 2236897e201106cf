"""The domain: model, workflow rules, one service module per manual chapter (no Tk, sockets, HTTP)."""
