"""The site's own surfaces: the pages, the chat stream, the site API and the WebSocket."""
