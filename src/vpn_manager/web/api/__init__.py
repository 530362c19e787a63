"""The REST API of `vpn web`: what the CLI does for users, servers, stats and the audit log, as
JSON under /api/v1, on its own listener (127.0.0.1:2097 unless chosen), with API keys.

- `access`: keys (read or write), the failed-attempt limiter, the audit record of every change;
- `errors`: the one table from the project's errors to HTTP statuses, and the JSON error shape;
- `models`: request and response bodies;
- `users`, `servers`: the routes, each calling the service method its CLI command calls;
- `docs`: swagger-ui at /api/docs, served locally;
- `app`: the application that puts them together.
"""
