"""A Flask app limited per organization by plan.

Each request names its organization in the ``X-Org-Id`` header; the
organization's plan (FREE, PRO or ENTERPRISE: 100, 1,000 and 10,000
requests per hour) comes from ``PLAN_BY_ORG``. Unknown organizations are on
FREE, and a request without the header is limited by client address on
FREE. ``/search`` has a second, per-route limit of 10 per minute.

Run (from the repository root, after ``pip install ./bindings/python
flask``)::

    flask --app examples/python/flask_app.py run
    curl -i -H 'X-Org-Id: globex' http://127.0.0.1:5000/

The counters live in the process (memory store); set ``TOLLGATE_URL``
(e.g. ``redis://127.0.0.1:6379/0``) to share them with every other process,
Python, Node or C, that uses the same Redis.

In a real app the organization comes from authentication (a session or an
API key), not from a header the client chooses:
``organization_key(getter=lambda request: flask.g.org_id)``.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Optional

from flask import Flask, request

import tollgate
from tollgate.flask import RateLimiter
from tollgate.plans import DEFAULT_PLANS, organization_key

#: Organization id -> plan name (a database in a real app).
PLAN_BY_ORG: Mapping[str, str] = {
    "initech": "FREE",
    "globex": "PRO",
    "acme": "ENTERPRISE",
}

ORG_HEADER = "X-Org-Id"


def plan_of(req: Any) -> str:
    return PLAN_BY_ORG.get(req.headers.get(ORG_HEADER, ""), "FREE")


def create_app(limiter: Optional[tollgate.Limiter] = None) -> Flask:
    """The app; ``limiter`` defaults to ``Limiter(TOLLGATE_URL)`` (memory
    store when the variable is unset)."""
    if limiter is None:
        limiter = tollgate.Limiter(os.environ.get("TOLLGATE_URL") or None)
    key = organization_key(ORG_HEADER)

    app = Flask(__name__)
    limits = RateLimiter(
        app,
        limiter=limiter,
        key=key,
        plans=DEFAULT_PLANS,
        plan_of=plan_of,
    )

    @app.get("/")
    def index() -> Dict[str, Any]:
        return {"org": request.headers.get(ORG_HEADER), "plan": plan_of(request)}

    @app.get("/search")
    @limits.limit(tollgate.Policy(10, "1m"), name="search")
    def search() -> Dict[str, Any]:
        return {"q": request.args.get("q", ""), "results": []}

    return app


app = create_app()
