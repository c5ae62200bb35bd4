"""Live updates for the pages, sent as Server-Sent Events on GET /api/events.

Components publish events with an audience: roles, and optionally one operator
endpoint or one agency. Each open page has a bounded queue. A page that falls
behind loses its queued events and gets one `resync` event, after which it reloads
its state over the JSON API.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

from sigap_pbx.store.accounts import Role, UserView
from sigap_pbx.web.access import EVERYONE, route, user_of

log = structlog.get_logger(__name__)

QUEUE_SIZE = 256
KEEPALIVE_SECONDS = 15.0
# EventSource waits this long before reconnecting after the stream ends.
RETRY_MILLISECONDS = 2000


@dataclass(frozen=True, slots=True)
class Event:
    kind: str
    data: dict[str, Any]
    roles: frozenset[Role]
    endpoint: str | None = None
    agency: str | None = None
    # Set for an event meant for one account only, such as the result of its request.
    username: str | None = None

    def reaches(self, user: UserView) -> bool:
        if user.role not in self.roles:
            return False
        if self.username is not None:
            return user.username == self.username
        if self.agency is not None and user.role is Role.AGENCY:
            return user.agency_code == self.agency
        if self.agency is None and user.role is Role.AGENCY:
            return False
        if self.endpoint is not None and user.role is Role.OPERATOR:
            return user.endpoint == self.endpoint
        return True


class Subscription:
    def __init__(self, user: UserView) -> None:
        self.user = user
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(QUEUE_SIZE)
        self.dropped = 0

    def offer(self, event: Event) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(Event("resync", {}, EVERYONE))


class Feed:
    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()
        self.published = 0

    def publish(
        self,
        kind: str,
        data: dict[str, Any],
        *,
        roles: frozenset[Role],
        endpoint: str | None = None,
        agency: str | None = None,
        username: str | None = None,
    ) -> None:
        """Send one event to every open page whose user is in the audience."""
        event = Event(kind, data, roles, endpoint, agency, username)
        self.published += 1
        for subscription in list(self._subscriptions):
            if event.reaches(subscription.user):
                subscription.offer(event)

    def subscribe(self, user: UserView) -> Subscription:
        subscription = Subscription(user)
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    def close(self) -> None:
        """End every open stream, as the controller stops."""
        for subscription in list(self._subscriptions):
            try:
                subscription.queue.put_nowait(None)
            except asyncio.QueueFull:
                subscription.queue.get_nowait()
                subscription.queue.put_nowait(None)

    @property
    def subscribers(self) -> int:
        return len(self._subscriptions)

    def has_subscribers(self, roles: frozenset[Role]) -> bool:
        """Return whether any open page belongs to a user with one of `roles`."""
        return any(s.user.role in roles for s in self._subscriptions)


def _frame(kind: str, data: dict[str, Any]) -> bytes:
    # json.dumps escapes newlines inside strings, so the data is one line.
    return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


async def events(request: web.Request) -> web.StreamResponse:
    from sigap_pbx.web.app import CONTROLLER

    feed: Feed | None = getattr(request.app[CONTROLLER], "feed", None)
    if feed is None:
        raise web.HTTPServiceUnavailable(reason="Live feed unavailable")
    user = user_of(request)
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream",
        "Cache-Control": "no-store",
        "X-Accel-Buffering": "no",
    })
    await response.prepare(request)
    subscription = feed.subscribe(user)
    try:
        await response.write(f"retry: {RETRY_MILLISECONDS}\n\n".encode())
        await response.write(_frame("hello", {"user": user.username}))
        while True:
            try:
                event = await asyncio.wait_for(subscription.queue.get(), KEEPALIVE_SECONDS)
            except TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            if event is None:
                break
            await response.write(_frame(event.kind, event.data))
    except ConnectionResetError:
        pass
    finally:
        feed.unsubscribe(subscription)
    return response


def add_routes(app: web.Application) -> None:
    route(app, "GET", "/api/events", events, EVERYONE)
