"""PayoutAdminService's webhook RPCs: the delivery log and redelivery (admin-only like the
rest of the service: the interceptor checks the identity). AdminServicer mixes this in."""

from __future__ import annotations

import logging

import grpc

from payout_service.adapters import webhook_store as store
from payout_service.adapters.webhook_store import DELIVERY_STATES, Delivery, DeliveryAttempt
from payout_service.api.convert import timestamp
from payout_service.api.errors import handles_errors
from payout_service.api.identity import caller_identity
from payout_service.app.monitoring import Monitor
from payout_service.core.errors import FieldViolation, NotFoundError, ValidationFailed
from payout_service.core.webhooks import EventRef, parse_event_id
from stellar_payouts_pb.payout.v1 import admin_pb2 as apb

log = logging.getLogger(__name__)

STATE_TO_PB = {s: apb.WebhookDeliveryState.Value(f"WEBHOOK_DELIVERY_STATE_{s}")
               for s in DELIVERY_STATES}
PB_TO_STATE = {v: k for k, v in STATE_TO_PB.items()}
DEFAULT_PAGE, MAX_PAGE = 50, 500


def attempt_to_pb(a: DeliveryAttempt) -> apb.WebhookDeliveryAttempt:
    return apb.WebhookDeliveryAttempt(
        attempt=a.attempt, url=a.url, status_code=a.status_code or 0, latency_ms=a.latency_ms,
        error=a.error, attempted_at=timestamp(a.attempted_at))


def delivery_to_pb(d: Delivery) -> apb.WebhookDelivery:
    return apb.WebhookDelivery(
        event_id=d.event_id, event_type=d.event_type, state=STATE_TO_PB[d.state],
        attempts=d.attempts, created_at=timestamp(d.created_at),
        next_attempt_at=timestamp(d.next_attempt_at), delivered_at=timestamp(d.delivered_at),
        dead_lettered_at=timestamp(d.dead_lettered_at), last_error=d.last_error,
        log=[attempt_to_pb(a) for a in d.log])


def _event_ref(text: str) -> EventRef:
    ref = parse_event_id(text)
    if ref is None:
        raise ValidationFailed([FieldViolation(
            "event_id", "must be an event id as webhooks carry it: <n> or alert-<n>")])
    return ref


class WebhookAdmin:
    monitor: Monitor

    @handles_errors
    async def ListWebhookDeliveries(  # noqa: N802 - gRPC method name
        self, request: apb.ListWebhookDeliveriesRequest, context: grpc.aio.ServicerContext,
        corr: str,
    ) -> apb.ListWebhookDeliveriesResponse:
        violations = []
        ref = parse_event_id(request.event_id) if request.event_id else None
        if request.event_id and ref is None:
            violations.append(FieldViolation(
                "event_id", "must be an event id as webhooks carry it: <n> or alert-<n>"))
        if any(s not in PB_TO_STATE for s in request.states):
            violations.append(FieldViolation("states", "contains an unknown state"))
        if request.page_size > MAX_PAGE:
            violations.append(FieldViolation("page_size", f"must be at most {MAX_PAGE}"))
        after = None
        if request.page_token:
            try:
                after = store.decode_page_token(request.page_token)
            except store.InvalidDeliveryPageToken as err:
                violations.append(FieldViolation("page_token", str(err)))
        if violations:
            raise ValidationFailed(violations)
        states = [PB_TO_STATE[s] for s in request.states]
        pool = self.monitor.pool
        if ref is not None:
            found = await store.get_delivery(pool, ref)
            matches = found is not None and (not states or found.state in states)
            return apb.ListWebhookDeliveriesResponse(
                deliveries=[delivery_to_pb(found)] if found is not None and matches else [])
        size = request.page_size or DEFAULT_PAGE
        page = await store.list_deliveries(pool, states=states, limit=size + 1, after=after)
        more = len(page) > size
        page = page[:size]
        return apb.ListWebhookDeliveriesResponse(
            deliveries=[delivery_to_pb(d) for d in page],
            next_page_token=store.encode_page_token(page[-1].created_at, page[-1].event_id)
            if more else "")

    @handles_errors
    async def RedeliverWebhook(  # noqa: N802
        self, request: apb.RedeliverWebhookRequest, context: grpc.aio.ServicerContext,
        corr: str,
    ) -> apb.RedeliverWebhookResponse:
        ref = _event_ref(request.event_id)
        pool = self.monitor.pool
        if not await store.redeliver(pool, ref):
            raise NotFoundError(f"webhook event {ref.event_id} not found")
        log.info("webhook redelivery queued", extra={
            "outbox_event_id": ref.event_id, "actor": caller_identity(context),
            "correlation_id": corr})
        delivery = await store.get_delivery(pool, ref)
        assert delivery is not None  # events are never deleted
        return apb.RedeliverWebhookResponse(delivery=delivery_to_pb(delivery))
