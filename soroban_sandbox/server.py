"""The HTTP edge: JSON-RPC on ``POST /``, friendbot, the admin API and the ledger clock.

Everything here is transport, timing and fault injection; all ledger rules live in the core.
Handlers never await between reading and changing ledger state, so the single event loop is the
only lock needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import web
from stellar_sdk import Asset, Network, StrKey
from stellar_sdk import xdr as x

from . import xdr_build as b
from .contracts import (
    DEFAULT_PAYOUT_BATCH_METHOD,
    ContractRegistry,
    asset_name,
    default_payout_contract_id,
)
from .entry_history import account_key
from .faults import FaultDice, FaultError, Faults, route, updated
from .frozen import FreezeError, freezable
from .issued import (
    IssuedAssetError,
    authorize_trustline,
    issue,
    open_trustline,
    parse_asset,
)
from .ledger import AccountExists, ArchiveError, Envelope, InvalidEnvelope, Ledger, LedgerLimits
from .nodes import RpcNodes
from .protocol import NEWEST, Protocol, ProtocolError
from .records import INT64_MAX, min_balance
from .replay import PublicEnvelopes
from .resources import PUBLISHED_TX_LIMITS, TxLimits
from .rpc import StellarRpc
from .rpc_params import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    PARSE_ERROR,
    RpcError,
)

log = logging.getLogger("soroban_sandbox")

MAX_TIME_SLIP_SECONDS = 10  # like stellar-core's slip limit: close times never run far ahead


def next_trigger(last_trigger: float, interval: float, now: float) -> float:
    """When the next ledger closes: one interval after the last one was triggered, not after
    it finished closing (so the time a close takes does not stretch every ledger), or at once
    if that moment has passed. stellar-core's HerderImpl::setupTriggerNextLedger does the
    same: trigger = last ledger's starting point + expected close time, never before now."""
    return max(last_trigger + interval, now)


@dataclass(frozen=True)
class SandboxConfig:
    passphrase: str = Network.STANDALONE_NETWORK_PASSPHRASE
    ledger_interval: float = 5.0
    seed: int = 0
    payout_contract_id: str | None = None
    payout_method: str = "distribute_winnings"
    retention_ledgers: int = 120_960
    public_url: str = ""  # for friendbotUrl; filled in once the port is known
    soroban_txs_per_ledger: int = LedgerLimits.soroban_txs_per_ledger
    classic_ops_per_ledger: int = LedgerLimits.classic_ops_per_ledger
    max_healthy_latency: float = 30.0  # seconds; stellar-rpc's --max-healthy-ledger-latency
    payout_batch_method: str = DEFAULT_PAYOUT_BATCH_METHOD
    tx_limits: TxLimits = PUBLISHED_TX_LIMITS
    ledger_instructions: int = LedgerLimits.ledger_instructions
    ledger_write_entries: int = LedgerLimits.ledger_write_entries
    ledger_disk_read_entries: int = LedgerLimits.ledger_disk_read_entries
    ledger_write_bytes: int = LedgerLimits.ledger_write_bytes
    ledger_tx_size_bytes: int = LedgerLimits.ledger_tx_size_bytes
    protocol: int = NEWEST


class Sandbox:
    def __init__(self, config: SandboxConfig, faults: Faults | None = None) -> None:
        self.config = config
        registry = ContractRegistry(
            passphrase=config.passphrase,
            payout_contract_id=config.payout_contract_id
            or default_payout_contract_id(config.passphrase),
            payout_method=config.payout_method,
            payout_batch_method=config.payout_batch_method,
        )
        self.ledger = Ledger(
            registry=registry,
            start_time=int(time.time()),
            retention_ledgers=config.retention_ledgers,
            limits=LedgerLimits(
                soroban_txs_per_ledger=config.soroban_txs_per_ledger,
                classic_ops_per_ledger=config.classic_ops_per_ledger,
                # stellar-core takes the expected close time in whole seconds.
                expected_close_seconds=int(config.ledger_interval),
                ledger_instructions=config.ledger_instructions,
                ledger_write_entries=config.ledger_write_entries,
                ledger_disk_read_entries=config.ledger_disk_read_entries,
                ledger_write_bytes=config.ledger_write_bytes,
                ledger_tx_size_bytes=config.ledger_tx_size_bytes,
            ),
            tx_limits=config.tx_limits,
            protocol=Protocol(config.protocol),
        )
        self.faults = faults or Faults()
        self.dice = FaultDice(config.seed)
        self.rpc = StellarRpc(
            self.ledger, friendbot_url="", max_healthy_latency=config.max_healthy_latency
        )
        self._stall_until = 0.0
        self._clock: asyncio.Task[None] | None = None
        # sendTransaction answers per transaction hash: {hash: {outcome: count}}, the outcome
        # being the status, and for ERROR its result code too ("ERROR txBAD_SEQ"), so a test
        # can see how often a client sent (or re-sent) a transaction and what it was told.
        self.submissions: dict[str, dict[str, int]] = {}
        self.nodes = RpcNodes()
        self.public = PublicEnvelopes()
        # What outsiders re-submitted (replay_rate): {hash, ledger, status, error}.
        self.replays: list[dict[str, Any]] = []
        self._apply_stall(self.faults)

    # -- ledger clock -------------------------------------------------------------------------

    def close_ledger(self) -> dict[str, Any]:
        closed = self.ledger.close(int(time.time()))
        faults = self.faults
        if self.dice.roll(faults.node_restart_rate):
            self.nodes.restart(self.dice.pick(len(faults.node_lags)), self.ledger, faults)
        self._replay_public_envelopes()
        return {"sequence": closed.seq, "close_time": closed.close_time}

    def _replay_public_envelopes(self) -> None:
        """An outsider re-submits envelopes clients sent, straight to an up-to-date node."""
        for envelope in self.public.still_open(self.ledger):
            if not self.dice.roll(self.faults.replay_rate):
                continue
            sub = self.ledger.submit(envelope.xdr, now=int(time.time()))
            error = b.result_code_name(sub.error_result_xdr) if sub.error_result_xdr else None
            self.replays.append(
                {
                    "hash": sub.hash,
                    "ledger": self.ledger.latest.seq,
                    "status": sub.status,
                    "error": error,
                }
            )

    def stalled(self) -> bool:
        return time.monotonic() < self._stall_until

    def _apply_stall(self, faults: Faults) -> None:
        stall = faults.stall_ledgers
        if stall is True:
            self._stall_until = math.inf
        elif stall is False or stall == 0:
            self._stall_until = 0.0
        else:
            self._stall_until = time.monotonic() + float(stall)

    async def _run_clock(self) -> None:
        loop = asyncio.get_running_loop()
        trigger = loop.time() + self.config.ledger_interval
        while True:
            await asyncio.sleep(max(0.0, trigger - loop.time()))
            anchor = trigger
            # Close times are whole seconds and strictly increasing; with sub-second ledgers
            # they run ahead of the wall clock, so cap the lead instead of letting them drift.
            if not self.stalled() and \
                    self.ledger.latest.close_time + 1 <= time.time() + MAX_TIME_SLIP_SECONDS:
                self.close_ledger()
            trigger = next_trigger(anchor, self.config.ledger_interval, loop.time())

    async def start_clock(self, _app: web.Application | None = None) -> None:
        self._clock = asyncio.create_task(self._run_clock())

    async def stop_clock(self, _app: web.Application | None = None) -> None:
        if self._clock is not None:
            self._clock.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._clock

    # -- JSON-RPC ---------------------------------------------------------------------------

    async def handle_rpc(self, request: web.Request) -> web.StreamResponse:
        faults = self.faults
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        if self.dice.roll(faults.http_503_rate):
            return web.Response(status=503, text="503 Service Unavailable (injected fault)")
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _rpc_error(None, PARSE_ERROR, "parse error: body is not JSON")
        answer = self._dispatch(body)
        if self.dice.roll(faults.timeout_rate):
            # The work is done (a submitted transaction may land); only the answer is lost.
            await asyncio.sleep(faults.timeout_ms / 1000)
        return answer

    def _dispatch(self, body: Any) -> web.Response:
        if not isinstance(body, dict):
            return _rpc_error(None, INVALID_REQUEST, "invalid request: expected a JSON object")
        request_id = body.get("id")
        method = body.get("method")
        params = body.get("params", {})
        if body.get("jsonrpc") != "2.0" or not isinstance(method, str) or request_id is None:
            return _rpc_error(
                request_id, INVALID_REQUEST, "invalid request: need jsonrpc, id, method"
            )
        if params is None:
            params = {}
        if not isinstance(params, dict):
            return _rpc_error(
                request_id, INVALID_PARAMS, "invalid params: params must be an object (by name)"
            )
        try:
            result = self._call(method, params)
        except RpcError as exc:
            return _rpc_error(request_id, exc.code, exc.message)
        except Exception:  # noqa: BLE001 - a harness bug must still answer as JSON-RPC
            log.exception("internal error in %s", method)
            return _rpc_error(request_id, INTERNAL_ERROR, "internal error")
        return web.json_response({"jsonrpc": "2.0", "id": request_id, "result": result})

    def _call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        view = self.nodes.view(self.ledger, route(self.faults, self.dice, method), self.faults)
        rpc = self.rpc.answering_from(view)
        if method != "sendTransaction":
            return rpc.call(method, params)
        answer = self._send(rpc, params)
        outcome = str(answer["status"])
        if answer.get("errorResultXdr"):
            outcome += " " + b.result_code_name(answer["errorResultXdr"])
        counts = self.submissions.setdefault(str(answer["hash"]), {})
        counts[outcome] = counts.get(outcome, 0) + 1
        return answer

    def _send(self, rpc: StellarRpc, params: dict[str, Any]) -> dict[str, Any]:
        faults = self.faults
        raw = params.get("transaction")
        envelope = self._decoded(raw)
        if self.dice.roll(faults.try_again_later_rate):
            # Answer like a congested node: the transaction is not queued.
            if envelope is None:
                raise RpcError(INVALID_PARAMS, "invalid_xdr")
            answer = rpc.submission_answer("TRY_AGAIN_LATER", envelope.hash_hex())
        else:
            drop = self.dice.roll(faults.drop_rate)
            fail = self.dice.roll(faults.fail_on_chain_rate)
            answer = rpc.send_transaction(params, drop=drop, fail_on_chain=fail, parsed=envelope)
        if envelope is not None:  # it left the client: anyone may hold it now
            self.public.remember(str(raw), envelope, str(answer["hash"]))
        return answer

    def _decoded(self, raw: Any) -> Envelope | None:
        if not isinstance(raw, str):
            return None
        try:
            return self.ledger.parse(raw)
        except InvalidEnvelope:
            return None

    # -- friendbot and admin ------------------------------------------------------------------

    async def friendbot(self, request: web.Request) -> web.Response:
        """GET or POST ``?addr=G...`` (the JS SDK's requestAirdrop POSTs; friendbot takes
        both). A POST may also carry ``addr`` as a form field."""
        addr = request.query.get("addr", "")
        if not addr and request.method == "POST":
            form = await request.post()
            addr = str(form.get("addr", ""))
        if not StrKey.is_valid_ed25519_public_key(addr):
            return _problem(400, "addr: must be a G... account id")
        try:
            account = self.ledger.fund(addr)
        except AccountExists:
            # Friendbot's answer names the CreateAccount result code; the JS SDK's
            # requestAirdrop treats a 400 whose detail has it as "already funded".
            detail = f"createAccountAlreadyExist: account {addr} already exists"
            return web.json_response({"error": detail, "detail": detail, "status": 400}, status=400)
        # Horizon-style fields of the funding transaction (friendbot answers with them); the
        # sandbox funds by fiat, so the hash names no transaction getTransaction knows.
        meta = b.account_created_meta(addr, account.balance, account.seq, self.ledger.latest.seq)
        funding = {
            "hash": b.sha256(f"friendbot|{addr}".encode()).hex(),
            "successful": True,
            "ledger": self.ledger.latest.seq,
            "result_meta_xdr": meta.to_xdr(),
        }
        return web.json_response(_account_json(self, account.account_id) | funding)

    async def account(self, request: web.Request) -> web.Response:
        account_id = request.match_info["account_id"]
        if account_id not in self.ledger.accounts:
            return _problem(404, f"account {account_id} not found")
        return web.json_response(_account_json(self, account_id))

    async def transfers(self, request: web.Request) -> web.Response:
        rows = []
        for t in self.ledger.transfers:
            row = asdict(t)
            row["from"] = row.pop("from_")
            row["amount_stroops"] = row.pop("amount")
            rows.append(row)
        return web.json_response(rows)

    async def transaction(self, request: web.Request) -> web.Response:
        tx = self.ledger.transaction(request.match_info["tx_hash"])
        if tx is None:
            return _problem(404, "transaction not included (pending, dropped, evicted or unknown)")
        return web.json_response(
            {
                "tx_hash": tx.hash,
                "ledger": tx.ledger,
                "application_order": tx.application_order,
                "successful": tx.successful,
                "failure": tx.failure,
            }
        )

    async def evictions(self, request: web.Request) -> web.Response:
        return web.json_response([asdict(e) for e in self.ledger.evictions])

    async def pending(self, request: web.Request) -> web.Response:
        return web.json_response(self.ledger.pending_hashes())

    async def submissions_json(self, request: web.Request) -> web.Response:
        return web.json_response(self.submissions)

    async def close(self, request: web.Request) -> web.Response:
        return web.json_response(self.close_ledger())

    async def nodes_json(self, request: web.Request) -> web.Response:
        return web.json_response(self.nodes.describe(self.ledger, self.faults))

    async def restart_node(self, request: web.Request) -> web.Response:
        """``{node?: index}`` (default 0): that node comes back with an empty history."""
        try:
            body = await _json_object(request) if request.can_read_body else {}
            node = body.get("node", 0)
            if not isinstance(node, int) or isinstance(node, bool):
                raise ValueError(f"node: an index into node_lags, got {node!r}")
            return web.json_response(self.nodes.restart(node, self.ledger, self.faults))
        except (IssuedAssetError, ValueError) as exc:
            return _problem(400, str(exc))

    async def replays_json(self, request: web.Request) -> web.Response:
        return web.json_response(self.replays)

    async def get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self.faults.as_json() | {"seed": self.dice.seed})

    async def set_faults(self, request: web.Request) -> web.Response:
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise FaultError("body must be a JSON object of fault settings")
            self.faults = updated(self.faults, changes)
        except (FaultError, ValueError) as exc:
            return _problem(400, str(exc))
        if "stall_ledgers" in changes:
            self._apply_stall(self.faults)
        return web.json_response(self.faults.as_json() | {"seed": self.dice.seed})

    async def deploy_asset(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            asset = Asset(str(body["code"]), str(body["issuer"]))
        except (KeyError, TypeError, ValueError) as exc:
            return _problem(400, f"need {{code, issuer}} of a valid asset: {exc}")
        return web.json_response({"contract_id": self.ledger.registry.register_asset(asset)})

    async def open_trustline(self, request: web.Request) -> web.Response:
        """``{account, asset: "CODE:ISSUER", limit?: stroops, authorized?: true}``."""
        try:
            body = await _json_object(request)
            asset = parse_asset(str(body.get("asset", "")))
            limit = body.get("limit", INT64_MAX)
            if not isinstance(limit, int) or isinstance(limit, bool):
                raise IssuedAssetError("limit: an integer number of stroops")
            authorized = bool(body.get("authorized", True))
            open_trustline(
                self.ledger, str(body.get("account", "")), asset, limit, authorized=authorized
            )
        except IssuedAssetError as exc:
            return _problem(400, str(exc))
        return web.json_response(_account_json(self, str(body["account"])))

    async def authorize_trustline(self, request: web.Request) -> web.Response:
        """``{account, asset, authorized: bool}``: the issuer sets or clears AUTHORIZED_FLAG."""
        try:
            body = await _json_object(request)
            asset = parse_asset(str(body.get("asset", "")))
            authorize_trustline(
                self.ledger,
                str(body.get("account", "")),
                asset,
                authorized=bool(body.get("authorized", True)),
            )
        except IssuedAssetError as exc:
            return _problem(400, str(exc))
        return web.json_response(_account_json(self, str(body["account"])))

    async def issue(self, request: web.Request) -> web.Response:
        """``{asset, to, amount_stroops}``: the issuer pays a holder under the Payment rules."""
        try:
            body = await _json_object(request)
            asset = parse_asset(str(body.get("asset", "")))
            amount = body.get("amount_stroops")
            if not isinstance(amount, int) or isinstance(amount, bool):
                raise IssuedAssetError("amount_stroops: an integer number of stroops")
            issue(self.ledger, asset, str(body.get("to", "")), amount)
        except IssuedAssetError as exc:
            return _problem(400, str(exc))
        return web.json_response(_account_json(self, str(body["to"])))

    async def set_balance(self, request: web.Request) -> web.Response:
        """``{balance_stroops}``: set an account's XLM balance by fiat (e.g. an underfunded
        payer)."""
        account_id = request.match_info["account_id"]
        account = self.ledger.accounts.get(account_id)
        if account is None:
            return _problem(404, f"account {account_id} not found")
        try:
            body = await _json_object(request)
        except IssuedAssetError as exc:
            return _problem(400, str(exc))
        value = body.get("balance_stroops")
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= INT64_MAX:
            return _problem(400, "balance_stroops: an integer number of stroops, 0..INT64_MAX")
        self.ledger.before_write(account_key(account_id))
        account.balance = value
        account.last_modified = self.ledger.latest.seq
        return web.json_response(_account_json(self, account_id))

    async def archive(self, request: web.Request) -> web.Response:
        """``{key: LedgerKey base64}``: the entry's TTL lapses (CAP-62); it is archived and a
        transaction must restore it (CAP-66). Answers ``{key, live_until_ledger, archived}``."""
        try:
            body = await _json_object(request)
        except IssuedAssetError as exc:
            return _problem(400, str(exc))
        try:
            key = x.LedgerKey.from_xdr(str(body.get("key", "")))
        except Exception:  # noqa: BLE001 - any decode failure is the caller's bad key
            return _problem(400, "key: must be a base64 LedgerKey")
        try:
            held = self.ledger.archive(key)
        except ArchiveError as exc:
            return _problem(400, str(exc))
        return web.json_response(
            {"key": key.to_xdr(), "live_until_ledger": held.live_until, "archived": True}
        )

    async def frozen_keys(self, request: web.Request) -> web.Response:
        return web.json_response(self._frozen_json())

    async def change_frozen_keys(self, request: web.Request) -> web.Response:
        """``{freeze: [LedgerKey base64], unfreeze: [...]}``: a CAP-77
        CONFIG_SETTING_FROZEN_LEDGER_KEYS_DELTA upgrade."""
        try:
            body = await _json_object(request)
            lists = [body.get(name, []) for name in ("freeze", "unfreeze")]
            if not all(isinstance(keys, list) for keys in lists):
                raise FreezeError("freeze, unfreeze: lists of base64 LedgerKeys")
            freeze, unfreeze = ([freezable(str(k)) for k in keys] for keys in lists)
            self.ledger.freeze(freeze, unfreeze)
        except (IssuedAssetError, FreezeError, ProtocolError) as exc:
            return _problem(400, str(exc))
        return web.json_response(self._frozen_json())

    def _frozen_json(self) -> dict[str, Any]:
        keys = [x.LedgerKey.from_xdr_bytes(k).to_xdr() for k in self.ledger.frozen.keys]
        return {"frozen": keys, "protocol": self.ledger.protocol.version}

    async def config_json(self, request: web.Request) -> web.Response:
        registry = self.ledger.registry
        return web.json_response(
            {
                "passphrase": registry.passphrase,
                "native_contract_id": registry.native_id,
                "payout_contract_id": registry.payout_contract_id,
                "payout_method": registry.payout_method,
                "payout_batch_method": registry.payout_batch_method,
                "tx_limits": asdict(self.ledger.tx_limits),
                "ledger_limits": asdict(self.ledger.limits),
                "assets": {cid: asset_name(a) for cid, a in registry.assets.items()},
                "ledger_interval": self.config.ledger_interval,
                "seed": self.dice.seed,
                "protocol": self.ledger.protocol.version,
            }
        )

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/", self.handle_rpc)
        app.router.add_get("/friendbot", self.friendbot)
        app.router.add_post("/friendbot", self.friendbot)
        app.router.add_get("/admin/accounts/{account_id}", self.account)
        app.router.add_get("/admin/transfers", self.transfers)
        app.router.add_get("/admin/transactions/{tx_hash}", self.transaction)
        app.router.add_get("/admin/evictions", self.evictions)
        app.router.add_get("/admin/pending", self.pending)
        app.router.add_get("/admin/submissions", self.submissions_json)
        app.router.add_post("/admin/close-ledger", self.close)
        app.router.add_get("/admin/nodes", self.nodes_json)
        app.router.add_post("/admin/restart-node", self.restart_node)
        app.router.add_get("/admin/replays", self.replays_json)
        app.router.add_get("/admin/faults", self.get_faults)
        app.router.add_post("/admin/faults", self.set_faults)
        app.router.add_post("/admin/assets", self.deploy_asset)
        app.router.add_post("/admin/trustlines", self.open_trustline)
        app.router.add_post("/admin/trustlines/authorize", self.authorize_trustline)
        app.router.add_post("/admin/issue", self.issue)
        app.router.add_post("/admin/accounts/{account_id}/balance", self.set_balance)
        app.router.add_get("/admin/config", self.config_json)
        app.router.add_post("/admin/archive", self.archive)
        app.router.add_get("/admin/frozen-keys", self.frozen_keys)
        app.router.add_post("/admin/frozen-keys", self.change_frozen_keys)
        app.on_startup.append(self.start_clock)
        app.on_cleanup.append(self.stop_clock)
        return app

    def set_public_url(self, url: str) -> None:
        self.rpc.friendbot_url = f"{url}/friendbot"


def _account_json(sandbox: Sandbox, account_id: str) -> dict[str, Any]:
    account = sandbox.ledger.accounts[account_id]
    tokens = {
        asset_name(sandbox.ledger.registry.assets[token]): held.amount
        for (token, holder), held in sandbox.ledger.tokens.items()
        if holder == account_id
    }
    lines = {
        name: {"balance": line.balance, "limit": line.limit, "authorized": line.authorized}
        for (holder, name), line in sandbox.ledger.trustlines.items()
        if holder == account_id
    }
    return {
        "account_id": account_id,
        "balance_stroops": account.balance,
        "sequence": account.seq,
        "num_sub_entries": account.num_sub_entries,
        "min_balance_stroops": min_balance(account.num_sub_entries),
        "token_balances": tokens,
        "trustlines": lines,
        # One balance per asset: XLM, then classic trustlines (the issued balances a classic
        # Payment moves), in stroops.
        "balances": {"native": account.balance}
        | {name: line["balance"] for name, line in lines.items()},
    }


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise IssuedAssetError("body: must be a JSON object") from None
    if not isinstance(body, dict):
        raise IssuedAssetError("body: must be a JSON object")
    return body


def _rpc_error(request_id: Any, code: int, message: str) -> web.Response:
    error = {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}
    return web.json_response(error)


def _problem(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
