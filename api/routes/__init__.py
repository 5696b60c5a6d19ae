"""The API's routers, one per resource."""

V1 = "/api/v1"
