"""The Jupyter server extension (app.py) and its REST routes (routes.py, sweep_routes.py; what their handlers
share: handler.py) behind the side panel."""
