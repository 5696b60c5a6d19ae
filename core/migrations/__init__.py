"""SQL migrations of the shared schema (applied by ``ioc db migrate``)."""
