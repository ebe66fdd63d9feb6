"""REST routers: each route parses its input and makes one call to the terminal service."""
