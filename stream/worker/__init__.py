"""The stream service: the Faust app (`app.py` builds the app, its topics and checkpoint table;
`agents.py` declares the agent, timers and partition-signal handlers on it, `pages.py` the web
pages, `joins.py` the request-id joins), what its agent does without Faust (`service.py`), the
worker's settings, metrics and baselines directory, and the `skewwatch worker` command."""

__all__: list[str] = []  # the package itself exports nothing: import its modules
