"""The live pipeline: prepare (build + sign), send, confirm: separate loops.

Sending never waits for confirmation. Each loop claims its work from PostgreSQL with
SKIP LOCKED, so any number of replicas can run them against one database.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from payout_service.adapters.attempt_store import AttemptStore
from payout_service.adapters.batch_store import BatchStore
from payout_service.adapters.ledger import LedgerGateway
from payout_service.adapters.sending_pause import SendingPause
from payout_service.adapters.sequences import Sequences
from payout_service.adapters.signer_client import SignerClient
from payout_service.adapters.work_queues import WorkQueues
from payout_service.app.chain_memory import ChainMemory
from payout_service.app.confirm import Confirming
from payout_service.app.prepare import Preparing
from payout_service.app.send import Sending
from payout_service.config import Config
from payout_service.loops import run_loop


class Pipeline(Preparing, Sending, Confirming):
    """The three loops over one set of ports."""

    def __init__(
        self, config: Config, attempts: AttemptStore, ledger: LedgerGateway,
        signer: SignerClient | None,
    ) -> None:
        self.config = config
        self.attempts = attempts
        self.batches = BatchStore(attempts.pool)
        self.queues = WorkQueues(attempts.pool)
        self.sequences = Sequences(attempts.pool)
        self.sending_pause = SendingPause(attempts.pool)
        self.ledger = ledger
        self.chain = ChainMemory()
        self.signer = signer
        self.external = config.signing_mode == "external"
        # Decided at each build pass from the channel registry (core/sources.py); the seed
        # PAYOUTS_CHANNEL_ACCOUNTS only registers channels at start-up (main.py).
        self.channel_mode = False
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._poll = timedelta(milliseconds=config.confirm_poll_ms)
        self._nudges = {name: asyncio.Event() for name in ("preparer", "sender", "confirmer")}

    # ---- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        interval = min(1.0, self.config.confirm_poll_ms / 1000)
        for name, step in (("preparer", self.prepare_once), ("sender", self.send_once),
                           ("confirmer", self.confirm_once)):
            self._tasks.append(asyncio.create_task(run_loop(
                name, step, interval=interval, halt=self._stop, pool=self.attempts.pool,
                nudge=self._nudges[name])))

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
