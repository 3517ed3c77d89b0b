"""A Functions app with only the scheduling blueprint, for running it under the local trigger host."""

import azure.functions as func

from functions import scheduling

app = func.FunctionApp()
app.register_functions(scheduling.bp)
