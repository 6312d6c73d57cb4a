"""Test helpers: run the sandbox (a TEST HARNESS, not a node) and talk to its admin API.

Other components' integration tests use the subprocess variant::

    async with RunningSandbox(ledger_interval=0.2, seed=7) as sandbox:
        server = SorobanServerAsync(sandbox.rpc_url)
        await sandbox.fund(keypair.public_key)
        ...
        assert [t["amount_stroops"] for t in await sandbox.transfers()] == [100]

``InProcessSandbox`` has the same client API but serves from the current event loop (faster
start, used by the sandbox's own tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import aiohttp
from aiohttp import web
from stellar_sdk import Account, Asset, Keypair, Network, TransactionBuilder

from .faults import Faults, updated
from .main import READY_MARKER
from .server import Sandbox, SandboxConfig

STANDALONE_PASSPHRASE = Network.STANDALONE_NETWORK_PASSPHRASE


class SandboxClient:
    """Admin and friendbot calls against a running sandbox at ``base_url``."""

    base_url: str
    passphrase: str

    @property
    def rpc_url(self) -> str:
        return f"{self.base_url}/"

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        async with aiohttp.ClientSession() as session:
            async with session.request(method, f"{self.base_url}{path}", **kwargs) as resp:
                body = await resp.json()
                if resp.status == 404:
                    return None
                if resp.status >= 400:
                    raise RuntimeError(f"{method} {path}: {resp.status} {body}")
                return body

    async def fund(self, address: str) -> dict[str, Any]:
        """Friendbot: create ``address`` with 10,000 XLM."""
        result: dict[str, Any] = await self._request("GET", "/friendbot", params={"addr": address})
        return result

    async def account(self, address: str) -> dict[str, Any] | None:
        """``{account_id, balance_stroops, sequence, token_balances}`` or None if absent."""
        result: dict[str, Any] | None = await self._request("GET", f"/admin/accounts/{address}")
        return result

    async def transfers(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._request("GET", "/admin/transfers")
        return result

    async def transaction(self, tx_hash: str) -> dict[str, Any] | None:
        """``{tx_hash, ledger, application_order, successful, failure}`` of an included tx."""
        result: dict[str, Any] | None = await self._request("GET", f"/admin/transactions/{tx_hash}")
        return result

    async def submissions(self) -> dict[str, dict[str, int]]:
        """sendTransaction answers so far, per transaction hash: ``{hash: {outcome: count}}``,
        the outcome PENDING, DUPLICATE, TRY_AGAIN_LATER or ``ERROR <code>`` (ERROR
        txBAD_SEQ)."""
        result: dict[str, dict[str, int]] = await self._request("GET", "/admin/submissions")
        return result

    async def evictions(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._request("GET", "/admin/evictions")
        return result

    async def set_faults(self, **faults: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("POST", "/admin/faults", json=faults)
        return result

    async def reset_faults(self) -> dict[str, Any]:
        return await self.set_faults(**Faults().as_json())

    async def faults(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("GET", "/admin/faults")
        return result

    async def close_ledger(self) -> dict[str, Any]:
        """Close one ledger now: ``{sequence, close_time}``."""
        result: dict[str, Any] = await self._request("POST", "/admin/close-ledger")
        return result

    async def deploy_asset(self, code: str, issuer: str) -> str:
        """Deploy the SAC of ``code:issuer``; returns its contract id."""
        body = await self._request("POST", "/admin/assets", json={"code": code, "issuer": issuer})
        return str(body["contract_id"])

    async def open_trustline(
        self, account: str, asset: str, *, limit: int | None = None, authorized: bool = True
    ) -> dict[str, Any]:
        """Open ``account``'s trustline to ``asset`` ("CODE:ISSUER"; the issuer must exist),
        with ``limit`` stroops (default INT64_MAX); returns the account."""
        body: dict[str, Any] = {"account": account, "asset": asset, "authorized": authorized}
        if limit is not None:
            body["limit"] = limit
        result: dict[str, Any] = await self._request("POST", "/admin/trustlines", json=body)
        return result

    async def authorize_trustline(
        self, account: str, asset: str, *, authorized: bool = True
    ) -> dict[str, Any]:
        body = {"account": account, "asset": asset, "authorized": authorized}
        result: dict[str, Any] = await self._request(
            "POST", "/admin/trustlines/authorize", json=body
        )
        return result

    async def issue(self, asset: str, to: str, amount_stroops: int) -> dict[str, Any]:
        """The issuer of ``asset`` pays ``to`` (Payment rules: trustline, authorised, limit)."""
        body = {"asset": asset, "to": to, "amount_stroops": amount_stroops}
        result: dict[str, Any] = await self._request("POST", "/admin/issue", json=body)
        return result

    async def set_balance(self, account: str, balance_stroops: int) -> dict[str, Any]:
        """Set ``account``'s XLM balance (stroops) by fiat."""
        result: dict[str, Any] = await self._request(
            "POST", f"/admin/accounts/{account}/balance", json={"balance_stroops": balance_stroops}
        )
        return result

    async def balances(self, account: str) -> dict[str, int]:
        """``{"native": stroops, "CODE:ISSUER": stroops, ...}``; {} if the account is absent."""
        found = await self.account(account)
        return dict(found["balances"]) if found else {}

    async def config(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("GET", "/admin/config")
        return result

    async def archive(self, key_xdr: str) -> dict[str, Any]:
        """Let a persistent contract entry's TTL lapse (a base64 LedgerKey, e.g.
        ``xdr_build.balance_key(token_id, holder).to_xdr()``): ``{key, live_until_ledger,
        archived}``."""
        result: dict[str, Any] = await self._request(
            "POST", "/admin/archive", json={"key": key_xdr}
        )
        return result

    async def freeze(self, *keys_xdr: str) -> list[str]:
        """Freeze ledger keys (CAP-77; base64 LedgerKeys); returns every frozen key."""
        return await self._frozen_delta({"freeze": list(keys_xdr)})

    async def unfreeze(self, *keys_xdr: str) -> list[str]:
        return await self._frozen_delta({"unfreeze": list(keys_xdr)})

    async def frozen_keys(self) -> list[str]:
        result: dict[str, Any] = await self._request("GET", "/admin/frozen-keys")
        return list(result["frozen"])

    async def _frozen_delta(self, body: dict[str, list[str]]) -> list[str]:
        result: dict[str, Any] = await self._request("POST", "/admin/frozen-keys", json=body)
        return list(result["frozen"])

    async def nodes(self) -> list[dict[str, Any]]:
        """Each RPC node behind the URL: ``{node, latest_ledger, oldest_ledger, core_ledger,
        entries_ledger, restarted_at, restarts}`` (``restarts``: the ledger each restart's
        history began at, oldest first)."""
        result: list[dict[str, Any]] = await self._request("GET", "/admin/nodes")
        return result

    async def restart_node(self, node: int = 0) -> dict[str, Any]:
        """Node ``node`` comes back with an empty history (it starts at its current ledger)."""
        result: dict[str, Any] = await self._request(
            "POST", "/admin/restart-node", json={"node": node}
        )
        return result

    async def replays(self) -> list[dict[str, Any]]:
        """What outsiders re-submitted under ``replay_rate``: ``{hash, ledger, status, error}``."""
        result: list[dict[str, Any]] = await self._request("GET", "/admin/replays")
        return result

    async def submit_as_outsider(self, envelope_xdr: str) -> dict[str, Any]:
        """Send a signed envelope the way a third party holding it would: a plain JSON-RPC
        sendTransaction, no SDK and no service in between. Returns the ``result`` object."""
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "sendTransaction",
            "params": {"transaction": envelope_xdr},
        }
        async with aiohttp.ClientSession() as session:
            async with session.post(self.rpc_url, json=body) as resp:
                answer = await resp.json()
        if "result" not in answer:
            raise RuntimeError(f"sendTransaction refused: {answer.get('error')}")
        result: dict[str, Any] = answer["result"]
        return result

    async def pay_outside(
        self,
        payer: Keypair,
        destination: str,
        amount_stroops: int,
        *,
        asset: str = "native",
        within: float = 30.0,
    ) -> str:
        """A payment no service made: ``payer`` (a key the test holds) pays ``destination``
        with a classic Payment of ``asset`` ("native" or "CODE:ISSUER"), signed here, sent
        with ``submit_as_outsider`` and waited for until included. Retries while the account
        has a transaction queued or its sequence number moved under it. Returns the hash."""
        paid = Asset.native() if asset == "native" else Asset(*asset.split(":", 1))
        amount = f"{amount_stroops // 10_000_000}.{amount_stroops % 10_000_000:07d}"
        deadline = asyncio.get_running_loop().time() + within
        sent: list[str] = []  # every attempt: an earlier one may still land (it is public)
        while asyncio.get_running_loop().time() < deadline:
            for tx_hash in sent:
                landed = await self.transaction(tx_hash)
                if landed is not None:
                    if not landed["successful"]:
                        raise RuntimeError(f"pay_outside: {landed['failure']}")
                    return tx_hash
            found = await self.account(payer.public_key)
            if found is None:
                raise RuntimeError(f"pay_outside: payer {payer.public_key} does not exist")
            tx = (
                TransactionBuilder(
                    Account(payer.public_key, found["sequence"]), self.passphrase, base_fee=100
                )
                .append_payment_op(destination, paid, amount)
                .set_timeout(max(1, int(within)))
                .build()
            )
            tx.sign(payer)
            sent.append(tx.hash_hex())
            if (await self.submit_as_outsider(tx.to_xdr()))["status"] in ("PENDING", "DUPLICATE"):
                await self._until_not_queued(tx.hash_hex(), deadline)
            else:
                await asyncio.sleep(0.05)  # another tx of the payer queued, or a node behind
        raise RuntimeError(f"pay_outside: not included within {within}s")

    async def _until_not_queued(self, tx_hash: str, deadline: float) -> None:
        while asyncio.get_running_loop().time() < deadline:
            if tx_hash not in await self._request("GET", "/admin/pending"):
                return  # included, or never queued (dropped, refused by the validators)
            await asyncio.sleep(0.05)


class RunningSandbox(SandboxClient):
    """The sandbox as a subprocess on a free loopback port; stopped on exit."""

    def __init__(
        self,
        *,
        ledger_interval: float = 0.2,
        seed: int = 0,
        passphrase: str = STANDALONE_PASSPHRASE,
        payout_contract_id: str | None = None,
        payout_method: str = "distribute_winnings",
        payout_batch_method: str = "distribute_batch",
        faults: dict[str, Any] | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 30.0,
        protocol: int | None = None,
    ) -> None:
        self.passphrase = passphrase
        self.base_url = ""
        self._args = [
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--ledger-interval",
            str(ledger_interval),
            "--seed",
            str(seed),
            "--network-passphrase",
            passphrase,
            "--payout-method",
            payout_method,
            "--payout-batch-method",
            payout_batch_method,
        ]
        if payout_contract_id:
            self._args += ["--payout-contract-id", payout_contract_id]
        if protocol is not None:
            self._args += ["--protocol", str(protocol)]
        for name, value in (faults or {}).items():
            self._args += ["--fault", f"{name}={_json_value(value)}"]
        self._args += list(extra_args)
        self._startup_timeout = startup_timeout
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "soroban_sandbox",
            *self._args,
            stdout=asyncio.subprocess.PIPE,
            env=os.environ.copy(),
        )
        try:
            self.base_url = await asyncio.wait_for(self._read_url(), self._startup_timeout)
            await asyncio.wait_for(self._wait_healthy(), self._startup_timeout)
        except BaseException:
            await self.stop()
            raise

    async def _read_url(self) -> str:
        assert self._process is not None and self._process.stdout is not None
        while True:
            line = await self._process.stdout.readline()
            if not line:
                raise RuntimeError(
                    f"soroban-sandbox exited early (code {self._process.returncode})"
                )
            text = line.decode().strip()
            if text.startswith(READY_MARKER):
                return text.split()[1]

    async def _wait_healthy(self) -> None:
        body = {"jsonrpc": "2.0", "id": 1, "method": "getHealth"}
        async with aiohttp.ClientSession() as session:
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.post(self.rpc_url, json=body) as resp:
                        if resp.status == 200 and (await resp.json()).get("result"):
                            return
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()

    async def __aenter__(self) -> RunningSandbox:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


class InProcessSandbox(SandboxClient):
    """The same server in the current event loop; ``.sandbox`` exposes the core for asserts."""

    def __init__(self, config: SandboxConfig | None = None, **faults: Any) -> None:
        self.sandbox_config = config or SandboxConfig(ledger_interval=0.2)
        self.passphrase = self.sandbox_config.passphrase
        self.sandbox = Sandbox(self.sandbox_config, updated(Faults(), faults))
        self.base_url = ""
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> InProcessSandbox:
        self._runner = web.AppRunner(self.sandbox.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        self.sandbox.set_public_url(self.base_url)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def _json_value(value: Any) -> str:
    return json.dumps(value)
