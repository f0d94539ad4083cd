"""The orchestrator's bottle application: the shared HTTP rules (``elastic.web``) and its routes.

``make_app(store, config)`` builds an explicit Bottle instance (never bottle's
default app) and attaches the seed-000 routes, the seed-004 views, the dashboard, the
provider budgets and ``/openapi.json``, sharing one worker-secret check and one bound on the
long polls held at once.
"""

from __future__ import annotations

import bottle

from elastic import web
from elastic.config import Config
from elastic.server import api, budgets, dashboard, fleet, openapi, views
from elastic.server.identity import WorkerIdentity
from elastic.server.samples import QueueSamples
from elastic.server.waiters import LongPolls
from elastic.store import Store


def make_app(store: Store, config: Config, *,
             fleet_health: fleet.FleetHealth | None = None,
             samples: QueueSamples | None = None) -> bottle.Bottle:
    """The orchestrator's WSGI application over ``store`` (``fleet_health``: the declared
    fleet's health, checked by the orchestrator's loop; default: never checked; the
    dashboard's charts read ``samples``, the orchestrator's, else a ring sampled on demand)."""
    fleet_health = fleet_health or fleet.FleetHealth(config.workers, token=config.token)
    app = web.json_app(token=config.token, max_body_bytes=config.max_body_bytes)
    identity = WorkerIdentity(store)
    api.add_routes(app, store, config, identity=identity,
                   long_polls=LongPolls(store.changes, limit=config.max_long_polls))
    views.add_routes(app, store, fleet_health)
    fleet.add_routes(app, store, fleet_health)
    dashboard.add_routes(app, store, samples or QueueSamples(store))
    openapi.add_routes(app)
    budgets.add_routes(app, budgets.ProviderBudgets.from_config(store, config),
                       identity=identity)
    return app
