"""The Alertmanager webhook receiver (`vigil serve`): FastAPI routers composed by `create_app`."""
