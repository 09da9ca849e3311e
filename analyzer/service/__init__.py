"""The long-running analyzer: the aiohttp app, the monitoring tick and the alert dispatcher."""
