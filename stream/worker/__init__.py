"""The stream service: the Faust app (`app.py` builds the app and its topics, table, agents,
timers and pages), what its agent does without Faust (`service.py`), the request-id joins, the
worker's settings, metrics and baselines directory, and the `skewwatch worker` command."""
