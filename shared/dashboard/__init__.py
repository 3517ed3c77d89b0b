"""The operator's dashboard: server-rendered pages (Jinja2 templates, htmx for live parts) served beside the
API by the same Function app, with OpenID Connect sign-in and the API's roles; and the small stores only it
reads (`cluster_history`). Importing the package itself loads no web framework."""
