"""The Jupyter server extension (app.py) and its REST routes (routes.py) behind the side panel."""
