"""Files: the v2 .sda container with its two backends, and the model and checkpoint files built on it."""
