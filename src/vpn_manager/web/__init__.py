"""`vpn web`: the subscription server (each user's URL, in the format their app reads, and their
page in a browser) and the REST API. A front end, like the CLI and the TUI: it reaches storage,
engines and runtimes only through the services.

- `formats`: which document a request gets (`?format=` or the app's User-Agent);
- `apps`: the client apps a user's page offers one-tap import buttons for;
- `ratelimit`: failed token lookups counted per client address;
- `page`: the user's page (server-rendered HTML, CSS inline, no JavaScript).
"""
