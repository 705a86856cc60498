"""The API's routers, one per resource; `serving.api` includes them."""
