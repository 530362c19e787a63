"""The full-screen terminal UI (`vpn tui`): a Textual front end over the same services the CLI
calls. Nothing here holds business rules; every action is one service call."""
