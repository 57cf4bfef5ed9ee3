"""A FastAPI app limited per organization by plan.

Each request names its organization in the ``X-Org-Id`` header; the
organization's plan (FREE, PRO or ENTERPRISE: 100, 1,000 and 10,000
requests per hour) comes from ``PLAN_BY_ORG``. Unknown organizations are on
FREE, and a request without the header is limited by client address on
FREE. ``/search`` has a second, per-route limit of 10 per minute.

Run (from the repository root, after ``pip install ./bindings/python
fastapi uvicorn``)::

    uvicorn --app-dir examples/python fastapi_app:app
    curl -i -H 'X-Org-Id: globex' http://127.0.0.1:8000/

The counters live in the process (memory store); set ``TOLLGATE_URL``
(e.g. ``redis://127.0.0.1:6379/0``) to share them with every other process,
Python, Node or C, that uses the same Redis.

In a real app the organization comes from authentication (a session or an
API key), not from a header the client chooses:
``organization_key(getter=lambda request: request.state.org_id)``.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Optional

from fastapi import Depends, FastAPI, Request

import tollgate
from tollgate.asgi import RateLimitMiddleware, RateLimitExceeded, rate_limit, rate_limit_exceeded_handler
from tollgate.plans import DEFAULT_PLANS, organization_key

#: Organization id -> plan name (a database in a real app).
PLAN_BY_ORG: Mapping[str, str] = {
    "initech": "FREE",
    "globex": "PRO",
    "acme": "ENTERPRISE",
}

ORG_HEADER = "X-Org-Id"


def plan_of(request: Request) -> str:
    return PLAN_BY_ORG.get(request.headers.get(ORG_HEADER, ""), "FREE")


def create_app(limiter: Optional[tollgate.Limiter] = None) -> FastAPI:
    """The app; ``limiter`` defaults to ``Limiter(TOLLGATE_URL)`` (memory
    store when the variable is unset)."""
    if limiter is None:
        limiter = tollgate.Limiter(os.environ.get("TOLLGATE_URL") or None)
    key = organization_key(ORG_HEADER)

    app = FastAPI(title="tollgate FastAPI example")
    app.state.limiter = limiter
    app.add_middleware(
        RateLimitMiddleware,
        limiter=limiter,
        key=key,
        plans=DEFAULT_PLANS,
        plan_of=plan_of,
    )
    # The dependency's 429 body, like the middleware's: detail and retry_after.
    app.add_exception_handler(RateLimitExceeded, rate_limit_exceeded_handler)

    search_limit = rate_limit(limiter, tollgate.Policy(10, "1m"), key=key, name="search")

    @app.get("/")
    async def index(request: Request) -> Dict[str, Any]:
        return {"org": request.headers.get(ORG_HEADER), "plan": plan_of(request)}

    @app.get("/search", dependencies=[Depends(search_limit)])
    async def search(q: str = "") -> Dict[str, Any]:
        return {"q": q, "results": []}

    return app


app = create_app()
