"""The Azure Functions app: builds the app and registers the blueprints. Nothing else."""

import azure.functions as func

from functions import clusters, scheduling, sweeps, triggers
from functions.dashboard import with_dashboard
from functions.http_api import api

app = func.AsgiFunctionApp(app=with_dashboard(api), http_auth_level=func.AuthLevel.ANONYMOUS)
app.register_functions(clusters.bp)
app.register_functions(scheduling.bp)
app.register_functions(triggers.bp)
app.register_functions(sweeps.bp)
