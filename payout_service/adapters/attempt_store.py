"""Attempt use cases in PostgreSQL: build, sign, confirm, die, give up, cancel, retry.

Every state change goes through payout_service/adapters/transitions.py inside one SQL transaction
with its audit (and outbox) rows (invariant 4), taking locks in the documented order: the
payout row, then its attempts, then source_accounts / released_sequences.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg

from payout_service.adapters.batch_store import rebuild_without
from payout_service.adapters.channel_store import hold_channel
from payout_service.adapters.payout_store import _attempt, payout_from_row
from payout_service.adapters.proof_store import record_proofs
from payout_service.adapters.sequences import (
    consumed_through,
    lease_channel,
    lock_source,
    release_sequence,
    renumber_from_chain,
    reserve_sequence,
)
from payout_service.adapters.transitions import NOW, move_attempt, move_payout, requeue
from payout_service.adapters.work_queues import supersede_rest
from payout_service.core.model import Attempt, NewAttempt, Payout
from payout_service.core.payment_proofs import PaymentProof
from payout_service.core.refusals import CHANNEL_HELD, EXPIRED_UNSIGNED
from payout_service.core.states import (
    AttemptMayStillLand,
    AttemptStatus,
    PayoutMode,
    PayoutState,
    given_up,
)

A = AttemptStatus
S = PayoutState
# The payout states whose current attempt may land: sent by us, or handed out unsigned.
_LANDS_FROM = frozenset({S.SUBMITTED, S.AWAITING_SIGNATURE})


class AttemptBuilder:
    """Callable that builds the envelope once the source and sequence number are reserved.

    With `from_channel`, the transaction's source is whichever channel account has nothing
    in flight (leased in the reserving SQL transaction); else it is `source_account`.
    """

    source_account: str
    from_channel: bool = False

    def __call__(self, source: str, sequence: int) -> NewAttempt:  # pragma: no cover
        raise NotImplementedError


class AttemptStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # ---- preparing attempts -----------------------------------------------------------

    async def create_attempt(
        self, payout_uuid: UUID, build: AttemptBuilder, *, external: bool
    ) -> tuple[Payout, Attempt] | None:
        """Locks the payout, reserves the next sequence number, stores the built envelope:
        one SQL transaction (docs/design.md, "Sequence numbers never block the account"). None if
        another worker got there first, or no source can take a transaction now."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT * FROM payouts WHERE id = $1 AND needs_attempt FOR UPDATE SKIP LOCKED",
                payout_uuid,
            )
            if row is None:
                return None
            payout = payout_from_row(row)
            source = build.source_account
            if build.from_channel:
                leased = await lease_channel(conn)
                if leased is None:
                    return None  # every channel has a transaction in flight
                source = leased
            if external and await _awaits_signature(conn, source):
                # One envelope per source waits for an outside signature at a time, so an
                # unsigned number never sits below a signed one: a signature that never comes
                # delays later payouts by one signing window at most, not for ever.
                return None
            sequence = await reserve_sequence(conn, source)
            new = build(source, sequence)
            number = payout.attempt_count + 1
            arow = await conn.fetchrow(
                """INSERT INTO payout_attempts (payout_id, number, source_account, sequence,
                       min_time, max_time, envelope_xdr, tx_hash, fee_stroops, status,
                       trace_context, submitted_ledger)
                   VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,'built',$10,$11) RETURNING *""",
                payout.id, number, new.source_account, new.sequence, new.min_time,
                new.max_time, new.envelope_xdr, new.tx_hash, new.fee_stroops,
                payout.trace_context, new.handed_out_at_ledger,
            )
            # The payout's mode is its current attempt's: after a change of signing mode,
            # rebuilt attempts follow the new one and the old attempt's watch follows its own.
            sets: dict[str, object] = {"needs_attempt": False, "attempt_count": number,
                                       "mode": PayoutMode.EXTERNAL if external
                                       else PayoutMode.SIGNER_SERVICE}
            if external:
                sets["unsigned_envelope_xdr"] = new.envelope_xdr
            built = await move_payout(
                conn, payout.id, S.AWAITING_SIGNATURE if external else payout.state,
                reason="attempt built", actor="preparer", attempt=number,
                only_from=frozenset({payout.state}), sets=sets,
            )
            attempt = _attempt(arow, built)
            return payout_from_row_with(built, attempt), attempt

    async def store_signed(
        self, payout_uuid: UUID, number: int, signed_xdr: str, *, actor: str
    ) -> bool:
        """Stores the signed envelope and queues the payout. False if no longer applicable."""
        async with self.pool.acquire() as conn, conn.transaction():
            current = await conn.fetchval(
                "SELECT attempt_count FROM payouts WHERE id = $1 FOR UPDATE", payout_uuid
            )
            if current != number:
                return False
            status = await conn.fetchval(
                "SELECT status FROM payout_attempts WHERE payout_id = $1 AND number = $2",
                payout_uuid, number,
            )
            if status != A.BUILT:
                return False
            await move_attempt(conn, payout_uuid, number, A.SIGNED,
                               sets={"envelope_xdr": signed_xdr, "signed": True})
            await move_payout(conn, payout_uuid, S.QUEUED, reason="signed", actor=actor,
                              attempt=number)
            return True

    async def refuse_unsent(
        self, payout_uuid: UUID, number: int, *, code: str, message: str, actor: str
    ) -> None:
        """Permanent refusal before sending (e.g. signer policy): the attempt never left us,
        so its number is free at once."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT 1 FROM payouts WHERE id = $1 FOR UPDATE", payout_uuid)
            attempt = await move_attempt(conn, payout_uuid, number, A.REJECTED,
                                         only_from=frozenset({A.BUILT}),
                                         sets={"result_code": code})
            await release_sequence(conn, attempt.source_account, attempt.sequence)
            await _fail(conn, payout_uuid, code, message, number, actor)

    async def hold_channel_unsent(
        self, payout_uuid: UUID, number: int, *, reason: str, actor: str
    ) -> bool:
        """The signer refused because of the attempt's channel (core/refusals.py), in one SQL
        transaction: the attempt never left us (REJECTED, its number free at once), the
        payout goes back to the queue, not failed and its attempt not counted (CHANNEL_HELD),
        and the channel stops being leased, with `reason`. True if this call held it."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT 1 FROM payouts WHERE id = $1 FOR UPDATE", payout_uuid)
            attempt = await move_attempt(conn, payout_uuid, number, A.REJECTED,
                                         only_from=frozenset({A.BUILT}),
                                         sets={"result_code": CHANNEL_HELD})
            await requeue(conn, payout_uuid, attempt=number, reason=f"{CHANNEL_HELD}: rebuilt",
                          actor=actor, not_before=datetime.now(UTC))
            held = await hold_channel(conn, attempt.source_account, reason, actor=actor)
            await release_sequence(conn, attempt.source_account, attempt.sequence)
            return held

    async def hold_channel_sent(self, attempt: Attempt, *, reason: str, actor: str) -> bool:
        """The network refused a sent transaction because of its channel (core/refusals.py),
        in one SQL transaction: the channel stops being leased, with `reason`, and the
        attempt (every member of its batch) is marked CHANNEL_HELD, so that once it is proven
        dead its payouts are rebuilt without counting it. It stays sent until then: the
        envelope left us and may still land. True if this call held the channel."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """SELECT 1 FROM payouts WHERE id = $1 OR id IN (
                       SELECT payout_id FROM payout_attempts WHERE batch_id = $2)
                   ORDER BY id FOR UPDATE""",
                attempt.payout_id, attempt.batch_id)
            await conn.execute(
                """UPDATE payout_attempts SET result_code = $3, updated_at = now()
                   WHERE ((payout_id = $1 AND number = $2) OR batch_id = $4)
                     AND status = 'sent'""",
                attempt.payout_id, attempt.number, CHANNEL_HELD, attempt.batch_id)
            return await hold_channel(conn, attempt.source_account, reason, actor=actor)

    async def rebuild_unsent(self, payout_uuid: UUID, number: int) -> bool:
        """A built, never signed attempt whose max_time has passed (the signer was away
        longer than the window): it can no longer be signed, and it never left us, so it is
        superseded, its number given back and the payout re-queued at once, uncounted. False
        when the attempt is no longer built (signed, cancelled or rebuilt meanwhile)."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT 1 FROM payouts WHERE id = $1 FOR UPDATE", payout_uuid)
            status = await conn.fetchval(
                "SELECT status FROM payout_attempts WHERE payout_id = $1 AND number = $2",
                payout_uuid, number)
            if status != A.BUILT:
                return False
            await supersede_rest(conn, [(payout_uuid, number)], reason=EXPIRED_UNSIGNED)
            return True

    async def fail_before_build(self, payout: Payout, code: str, message: str) -> bool:
        """Simulation failed or too expensive: no attempt, no number. False if another worker
        holds the payout."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT 1 FROM payouts WHERE id = $1 AND needs_attempt FOR UPDATE SKIP LOCKED",
                payout.id,
            )
            if row is None:
                return False
            await _fail(conn, payout.id, code, message, payout.attempt_count, "preparer")
            return True

    # ---- outcomes -----------------------------------------------------------------------

    async def confirm(self, attempt: Attempt, *, ledger: int, fee_charged: int,
                      proof: PaymentProof | None = None) -> Payout | None:
        """Marks the payout CONFIRMED, with its proof of payment in the same SQL transaction;
        returns it, or None if it was no longer SUBMITTED (or AWAITING_SIGNATURE: its holder
        submitted the envelope handed out to it)."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT state, attempt_count FROM payouts WHERE id = $1 FOR UPDATE",
                attempt.payout_id,
            )
            if row["state"] not in _LANDS_FROM or row["attempt_count"] != attempt.number:
                return None
            await move_attempt(conn, attempt.payout_id, attempt.number, A.INCLUDED,
                               only_from=frozenset({A.SENT, A.BUILT}), sets={
                                   "ledger": ledger, "fee_stroops": fee_charged,
                                   "result_code": "txSUCCESS"})
            await consumed_through(conn, attempt.source_account, attempt.sequence)
            payout = await move_payout(
                conn, attempt.payout_id, S.CONFIRMED, reason=f"included in ledger {ledger}",
                actor="confirmer", attempt=attempt.number, only_from=_LANDS_FROM,
                sets={"confirmed_at": NOW, "network_fee_stroops": fee_charged},
            )
            if payout is not None and proof is not None:
                await record_proofs(conn, [(attempt.payout_id, proof)])
            return payout

    async def attempt_dead(
        self, attempt: Attempt, *, status: AttemptStatus, code: str, proof: str | None,
        ledger: int | None, retry: bool, max_attempts: int, delay: timedelta, actor: str,
    ) -> PayoutState:
        """The attempt can never land (failed on chain, or proven dead): either a new attempt
        is scheduled or the payout fails. Returns the payout's new state."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT 1 FROM payouts WHERE id = $1 FOR UPDATE",
                               attempt.payout_id)
            sets: dict[str, object] = {"result_code": code, "proof": proof}
            if ledger is not None:
                sets["ledger"] = ledger
            await move_attempt(conn, attempt.payout_id, attempt.number, status, sets=sets)
            if status == A.DEAD:
                await release_sequence(conn, attempt.source_account, attempt.sequence)
            else:  # failed on chain: the number and the fee were consumed
                await consumed_through(conn, attempt.source_account, attempt.sequence)
            tries = await conn.fetchval(
                """SELECT count(*) FROM payout_attempts
                   WHERE payout_id = $1 AND status <> 'superseded'
                     AND result_code IS DISTINCT FROM $2""",
                attempt.payout_id, CHANNEL_HELD,
            )
            if retry and tries < max_attempts:
                await requeue(conn, attempt.payout_id, attempt=attempt.number,
                              reason=f"{code}: new attempt", actor=actor,
                              not_before=datetime.now(UTC) + delay)
                return S.QUEUED
            reason = code if not retry else "max_attempts"
            await _fail(conn, attempt.payout_id, reason, f"attempt {attempt.number}: {code}",
                        attempt.number, actor)
            return S.FAILED

    async def abandon_sent(self, attempt: Attempt, *, code: str, actor: str) -> None:
        """A rejection that can never become valid (txBAD_AUTH_EXTRA, txMALFORMED, …): the
        payout fails now instead of holding its number until max_time. The envelope is
        ABANDONED, not dead (a node may keep a copy), and its number goes to the next
        reservation: that replacement kills it by construction."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT 1 FROM payouts WHERE id = $1 FOR UPDATE",
                               attempt.payout_id)
            await move_attempt(conn, attempt.payout_id, attempt.number, A.ABANDONED,
                               only_from=frozenset({A.SENT}),
                               sets={"result_code": code, "next_poll_at": NOW})
            await release_sequence(conn, attempt.source_account, attempt.sequence)
            await _fail(conn, attempt.payout_id, code, f"attempt {attempt.number}: {code}",
                        attempt.number, actor)

    async def abandoned_landed(
        self, attempt: Attempt, *, successful: bool, ledger: int, code: str, fee_charged: int,
        proof: PaymentProof | None = None,
    ) -> Payout | None:
        """An ABANDONED envelope was included after all. Successful: the payout was paid, and
        the record says so (FAILED/CANCELLED -> CONFIRMED)."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT 1 FROM payouts WHERE id = $1 FOR UPDATE",
                               attempt.payout_id)
            target = A.INCLUDED if successful else A.FAILED_ON_CHAIN
            await move_attempt(conn, attempt.payout_id, attempt.number, target,
                               only_from=frozenset({A.ABANDONED}),
                               sets={"ledger": ledger, "result_code": code,
                                     "fee_stroops": fee_charged})
            # Its number was given to a replacement: take it back out of the free ones.
            await consumed_through(conn, attempt.source_account, attempt.sequence)
            if not successful:
                return None
            payout = await move_payout(
                conn, attempt.payout_id, S.CONFIRMED, actor="confirmer", attempt=attempt.number,
                reason=f"abandoned attempt {attempt.number} landed in ledger {ledger}",
                only_from=frozenset({S.FAILED, S.CANCELLED}),
                sets={"confirmed_at": NOW, "network_fee_stroops": fee_charged},
            )
            if payout is not None and proof is not None:
                await record_proofs(conn, [(attempt.payout_id, proof)])
            return payout

    async def abandoned_dead(self, attempt: Attempt, proof: str) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT 1 FROM payouts WHERE id = $1 FOR UPDATE",
                               attempt.payout_id)
            await move_attempt(conn, attempt.payout_id, attempt.number, A.DEAD,
                               only_from=frozenset({A.ABANDONED}), sets={"proof": proof})

    async def resync_source(self, account: str, chain_sequence: int) -> list[UUID]:
        """After txBAD_SEQ: every attempt of this source that never left us is superseded and
        its payout rebuilt; numbering restarts from the chain around what may still land
        (sequences.renumber_from_chain has the safety argument)."""
        async with self.pool.acquire() as conn, conn.transaction():
            # Payout rows first (lock order); SKIP LOCKED: a payout another worker holds keeps
            # its attempt, which then simply counts as holding its number.
            rows = await conn.fetch(
                """SELECT a.payout_id, a.number FROM payouts p JOIN payout_attempts a
                     ON a.payout_id = p.id AND a.number = p.attempt_count
                   WHERE a.source_account = $1 AND a.status IN ('built', 'signed')
                     AND p.mode = 'SIGNER_SERVICE'
                   ORDER BY p.id FOR UPDATE OF p SKIP LOCKED""",
                account,
            )
            for row in rows:
                await move_attempt(conn, row["payout_id"], row["number"], A.SUPERSEDED,
                                   only_from=frozenset({A.BUILT, A.SIGNED}))
                await requeue(conn, row["payout_id"], attempt=row["number"],
                              reason="re-sequenced after txBAD_SEQ", actor="sequencer",
                              not_before=datetime.now(UTC))
            await renumber_from_chain(conn, account, chain_sequence)
            return [r["payout_id"] for r in rows]

    # ---- bookkeeping that is not a state change ------------------------------------------

    async def note_rejection(self, attempt: Attempt, code: str) -> None:
        """Remembers the latest rejection of a still-live attempt: it decides between a new
        attempt and FAILED once the attempt is proven dead."""
        await self.pool.execute(
            """UPDATE payout_attempts SET result_code = $3, updated_at = now()
               WHERE ((payout_id = $1 AND number = $2) OR batch_id = $4) AND status = 'sent'
                 AND result_code IS DISTINCT FROM $5""",
            attempt.payout_id, attempt.number, code, attempt.batch_id, CHANNEL_HELD,
        )

    async def record_resend(self, attempt: Attempt, latest_ledger: int) -> bool:
        """Takes this ledger's one re-send of a sent envelope (core/pacing.resend_due), before
        it goes out. False if it was already sent or re-sent at this ledger (another confirmer
        got there first) or is no longer sent: then it is not re-sent."""
        status = await self.pool.execute(
            """UPDATE payout_attempts SET send_count = send_count + 1, last_sent_ledger = $3
               WHERE payout_id = $1 AND number = $2 AND status = 'sent'
                 AND (last_sent_ledger IS NULL OR last_sent_ledger < $3)""",
            attempt.payout_id, attempt.number, latest_ledger,
        )
        return bool(status == "UPDATE 1")

    async def attempt(self, payout_uuid: UUID, number: int) -> Attempt | None:
        row = await self.pool.fetchrow(
            "SELECT * FROM payout_attempts WHERE payout_id = $1 AND number = $2",
            payout_uuid, number,
        )
        return _attempt(row) if row else None

    # ---- operator actions ---------------------------------------------------------------

    async def retry_failed(self, payout_uuid: UUID, *, actor: str, reason: str) -> Payout:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT 1 FROM payouts WHERE id = $1 FOR UPDATE", payout_uuid)
            abandoned = await conn.fetchval(
                """SELECT number FROM payout_attempts WHERE payout_id = $1
                   AND status = 'abandoned' LIMIT 1""",
                payout_uuid,
            )
            if abandoned is not None:
                raise AttemptMayStillLand(abandoned)
            return await move_payout(
                conn, payout_uuid, S.QUEUED, reason=reason or "retry", actor=actor,
                only_from=frozenset({S.FAILED}),
                sets={"needs_attempt": True, "next_attempt_at": None, "failure_code": None,
                      "failure_message": None},
            )

    async def cancel(self, payout_uuid: UUID, *, actor: str, reason: str) -> Payout:
        """Cancels a payout that has no attempt on the network. Its current attempt, if any,
        gives its number back: at once if the envelope never left us (CANCELLED), through a
        replacement at the same number if it was handed to an external signer (ABANDONED)."""
        while True:  # again only if its batch changed meanwhile (it got a new attempt)
            async with self.pool.acquire() as conn, conn.transaction():
                if await _lock_with_batch(conn, payout_uuid):
                    return await self._cancel_locked(conn, payout_uuid, actor, reason)

    async def _cancel_locked(self, conn: asyncpg.Connection, payout_uuid: UUID, actor: str,
                             reason: str) -> Payout:
        row = await conn.fetchrow(
            "SELECT mode, attempt_count FROM payouts WHERE id = $1", payout_uuid
        )
        cancelled = await move_payout(
            conn, payout_uuid, S.CANCELLED, reason=reason or "cancelled", actor=actor,
            sets={"needs_attempt": False},
        )
        attempt = await conn.fetchrow(
            """SELECT status, source_account, sequence, batch_id FROM payout_attempts
               WHERE payout_id = $1 AND number = $2 AND status IN ('built', 'signed')""",
            payout_uuid, row["attempt_count"],
        )
        if attempt is not None:
            target = given_up(A(attempt["status"]), handed_out=row["mode"] == "EXTERNAL")
            await move_attempt(conn, payout_uuid, row["attempt_count"], target,
                               sets={"next_poll_at": NOW} if target == A.ABANDONED else {})
            if attempt["batch_id"] is not None:
                await rebuild_without(conn, attempt["batch_id"], payout_uuid)
            await release_sequence(conn, attempt["source_account"], attempt["sequence"])
        return cancelled


async def _lock_with_batch(conn: asyncpg.Connection, payout_uuid: UUID) -> bool:
    """Locks the payout and, when its current attempt is a batch's, every member of that
    batch, all in id order (the lock order): a cancel locking its own row first and then the
    lower ids would deadlock against a batch step locking them all in id order. False if
    the payout's batch changed between the look and the locks (the caller starts again)."""
    query = """SELECT a.batch_id FROM payouts p JOIN payout_attempts a
                 ON a.payout_id = p.id AND a.number = p.attempt_count WHERE p.id = $1"""
    batch = await conn.fetchval(query, payout_uuid)
    await conn.execute(
        """SELECT 1 FROM payouts WHERE id = $1 OR id IN (
               SELECT payout_id FROM payout_attempts WHERE batch_id = $2)
           ORDER BY id FOR UPDATE""",
        payout_uuid, batch,
    )
    return bool(await conn.fetchval(query, payout_uuid) == batch)


async def _awaits_signature(conn: asyncpg.Connection, source: str) -> bool:
    await lock_source(conn, source)
    return bool(await conn.fetchval(
        """SELECT 1 FROM payout_attempts WHERE source_account = $1
           AND status IN ('built', 'signed') LIMIT 1""",
        source,
    ))


async def _fail(
    conn: asyncpg.Connection, payout_uuid: UUID, code: str, message: str, attempt: int,
    actor: str,
) -> Payout:
    return await move_payout(
        conn, payout_uuid, S.FAILED, reason=code, actor=actor, attempt=attempt,
        sets={"failure_code": code, "failure_message": message[:500], "needs_attempt": False},
    )


def payout_from_row_with(payout: Payout, attempt: Attempt) -> Payout:
    return Payout(**{**payout.__dict__, "current_attempt": attempt})
