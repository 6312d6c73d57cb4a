#!/usr/bin/env node
// One XLM payout through the real JavaScript `@stellar/stellar-sdk` rpc client, against a
// Stellar RPC endpoint (here: soroban_sandbox, a test harness). Driven by
// tests/sandbox/test_js_client.py.
//
// Inputs (flags win over the environment):
//   --rpc-url URL          or SOROBAN_RPC_URL
//   --passphrase TEXT      or NETWORK_PASSPHRASE
//   --destination G...     or PAYOUT_DESTINATION
//   --amount STROOPS       or PAYOUT_AMOUNT (default 1234567)
//   --muxed-id ID          or PAYOUT_MUXED_ID (optional, a u64): afterwards, pay the destination
//                          as an exchange deposit, the muxed M... address with this id
//   --timeout SECONDS      or PAYOUT_FLOW_TIMEOUT (default 60; whole run)
//   PAYOUT_SOURCE_SECRET   the source account's secret seed: environment ONLY, never argv, so it
//                          does not show up in process listings or test logs. Never printed.
//
// Calls, in a payout system's order: getHealth, requestAirdrop (friendbot POST), getNetwork,
// getLatestLedger, getAccount
// (getLedgerEntries), getFeeStats, prepareTransaction (simulateTransaction + assemble) of a
// Stellar Asset Contract `transfer(from, to, amount: i128)` for native XLM, sendTransaction,
// getTransaction until final, getTransactions and getLedgers from the landing ledger, getEvents
// over the landing ledger; then the error paths a retrying
// payout system meets: the same envelope again while pending (DUPLICATE) and after it landed
// (ERROR, txBAD_SEQ), and a transaction whose sequence number skips ahead (ERROR, txBAD_SEQ).
// With --muxed-id: an exchange deposit to the muxed address, once through the SAC `transfer`
// (its `to` is a MuxedAddress, CAP-67) and once as a classic Payment, each confirmed by the
// `to_muxed_id` of its transfer event, read from getTransaction and from getEvents.
//
// Prints ONE JSON object summarising what the SDK returned on stdout and exits 0; on any
// mismatch prints "payout_flow: FAIL: ..." on stderr and exits 1.

import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

import {
  Account,
  Address,
  Asset,
  Keypair,
  MuxedAccount,
  Operation,
  StrKey,
  TransactionBuilder,
  nativeToScVal,
  rpc,
  scValToNative,
  xdr,
} from "@stellar/stellar-sdk";

class Mismatch extends Error {}

function check(condition, message) {
  if (!condition) {
    throw new Mismatch(message);
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function inputs() {
  const { values } = parseArgs({
    options: {
      "rpc-url": { type: "string" },
      passphrase: { type: "string" },
      destination: { type: "string" },
      amount: { type: "string" },
      timeout: { type: "string" },
      "muxed-id": { type: "string" },
    },
    strict: true,
  });
  const secret = process.env.PAYOUT_SOURCE_SECRET ?? "";
  delete process.env.PAYOUT_SOURCE_SECRET;
  const found = {
    rpcUrl: values["rpc-url"] ?? process.env.SOROBAN_RPC_URL ?? "",
    passphrase: values.passphrase ?? process.env.NETWORK_PASSPHRASE ?? "",
    destination: values.destination ?? process.env.PAYOUT_DESTINATION ?? "",
    amount: values.amount ?? process.env.PAYOUT_AMOUNT ?? "1234567",
    timeout: Number(values.timeout ?? process.env.PAYOUT_FLOW_TIMEOUT ?? "60"),
    muxedId: values["muxed-id"] ?? process.env.PAYOUT_MUXED_ID ?? null,
  };
  check(found.rpcUrl, "no RPC URL: pass --rpc-url or set SOROBAN_RPC_URL");
  check(found.passphrase, "no network passphrase: pass --passphrase or set NETWORK_PASSPHRASE");
  check(
    StrKey.isValidEd25519PublicKey(found.destination),
    "--destination / PAYOUT_DESTINATION must be a G... account address",
  );
  check(/^[1-9][0-9]*$/.test(found.amount), "--amount must be a positive integer of stroops");
  check(found.timeout > 0, "--timeout must be a positive number of seconds");
  check(found.muxedId === null || (/^[0-9]+$/.test(found.muxedId) && BigInt(found.muxedId) < 2n ** 64n),
    "--muxed-id must be a u64");
  // The message must not echo the value: it is a secret.
  check(StrKey.isValidEd25519SecretSeed(secret), "PAYOUT_SOURCE_SECRET must hold an S... secret seed");
  return { ...found, source: Keypair.fromSecret(secret), amount: BigInt(found.amount) };
}

function sdkVersion() {
  const url = new URL("./node_modules/@stellar/stellar-sdk/package.json", import.meta.url);
  return JSON.parse(readFileSync(url, "utf8")).version;
}

function resultCodeName(result) {
  check(
    result instanceof xdr.TransactionResult,
    `expected an xdr.TransactionResult, got ${result?.constructor?.name ?? typeof result}`,
  );
  return result.result().switch().name;
}

function transferArgs(from, to, amount) {
  return [
    new Address(from).toScVal(),
    new Address(to).toScVal(),
    nativeToScVal(amount, { type: "i128" }),
  ];
}

async function buildTransfer(server, account, cfg, contractId, fee) {
  const tx = new TransactionBuilder(account, { fee, networkPassphrase: cfg.passphrase })
    .addOperation(
      Operation.invokeContractFunction({
        contract: contractId,
        function: "transfer",
        args: transferArgs(cfg.source.publicKey(), cfg.destination, cfg.amount),
      }),
    )
    .setTimeout(30)
    .build();
  const prepared = await server.prepareTransaction(tx);
  prepared.sign(cfg.source);
  return prepared;
}

async function waitFinal(server, hash, deadlineMs) {
  for (;;) {
    const found = await server.getTransaction(hash);
    if (found.status !== rpc.Api.GetTransactionStatus.NOT_FOUND) {
      return found;
    }
    check(Date.now() < deadlineMs, `transaction ${hash} still NOT_FOUND at the deadline`);
    await sleep(100);
  }
}

// The CAP-67 data of a transfer event to a muxed destination: {amount: i128, to_muxed_id: u64}.
function muxedData(scVal, what) {
  check(scVal.switch().name === "scvMap", `${what}: event data is ${scVal.switch().name}, not a map`);
  const data = scValToNative(scVal);
  check(typeof data.amount === "bigint" && typeof data.to_muxed_id === "bigint",
    `${what}: data ${JSON.stringify(Object.keys(data))} is not {amount, to_muxed_id}`);
  return { amount: data.amount.toString(), toMuxedId: data.to_muxed_id.toString() };
}

async function confirmDeposit(server, tx, cfg, deadlineMs, what) {
  const hash = tx.hash().toString("hex");
  const sent = await server.sendTransaction(tx);
  check(sent.status === "PENDING", `${what}: sendTransaction ${sent.status}`);
  const landed = await waitFinal(server, hash, deadlineMs);
  check(landed.status === rpc.Api.GetTransactionStatus.SUCCESS, `${what}: ${landed.status}`);
  const [[event]] = landed.events.contractEventsXdr;
  const [name, , to] = event.body().v0().topics().map((t) => scValToNative(t));
  check(name === "transfer" && to === cfg.destination,
    `${what}: event ${name} to ${to}, expected a transfer to the G account`);
  const fromMeta = muxedData(event.body().v0().data(), `${what} getTransaction`);
  const found = await server.getEvents({
    startLedger: landed.ledger,
    endLedger: landed.ledger + 1,
    filters: [{
      type: "contract",
      topics: [["*", "*", new Address(cfg.destination).toScVal().toXDR("base64"), "*"]],
    }],
    limit: 10,
  });
  const ours = found.events.filter((e) => e.txHash === hash);
  check(ours.length === 1, `${what}: getEvents found ${ours.length} events of ${hash}`);
  const fromEvents = muxedData(ours[0].value, `${what} getEvents`);
  return {
    hash,
    ledger: landed.ledger,
    feeCharged: landed.resultXdr.feeCharged().toBigInt().toString(),
    transaction: fromMeta,
    events: fromEvents,
    envelopeDestination: null,
  };
}

async function payExchangeDeposit(server, cfg, contractId, fee, deadlineMs) {
  const base = await server.getAccount(cfg.destination);
  const deposit = new MuxedAccount(base, cfg.muxedId).accountId();
  check(StrKey.isValidMed25519PublicKey(deposit), "the muxed address is not an M... address");
  const viaSac = await buildTransfer(
    server, await server.getAccount(cfg.source.publicKey()), { ...cfg, destination: deposit },
    contractId, fee,
  );
  const sac = await confirmDeposit(server, viaSac, cfg, deadlineMs, "SAC deposit");
  const classic = new TransactionBuilder(await server.getAccount(cfg.source.publicKey()), {
    fee: "100",
    networkPassphrase: cfg.passphrase,
  })
    .addOperation(Operation.payment({ destination: deposit, asset: Asset.native(), amount: "0.0000100" }))
    .setTimeout(30)
    .build();
  classic.sign(cfg.source);
  const payment = await confirmDeposit(server, classic, cfg, deadlineMs, "classic deposit");
  const echoed = (await server.getTransaction(payment.hash)).envelopeXdr;
  payment.envelopeDestination = TransactionBuilder.fromXDR(echoed, cfg.passphrase)
    .operations[0].destination;
  return { address: deposit, sac, classic: payment };
}

async function main() {
  const cfg = inputs();
  const deadlineMs = Date.now() + cfg.timeout * 1000;
  const watchdog = setTimeout(() => {
    process.stderr.write(`payout_flow: FAIL: no result within ${cfg.timeout}s\n`);
    process.exit(1);
  }, cfg.timeout * 1000);
  watchdog.unref();

  const server = new rpc.Server(cfg.rpcUrl, { allowHttp: true });
  const summary = { sdkVersion: sdkVersion(), node: process.version };

  // -- node and network --------------------------------------------------------------------
  const health = await server.getHealth();
  check(health.status === "healthy", `getHealth: status ${JSON.stringify(health.status)}`);
  check(Number.isInteger(health.latestLedger), "getHealth: latestLedger is not an integer");
  check(Number.isInteger(health.oldestLedger), "getHealth: oldestLedger is not an integer");
  check(
    Number.isInteger(health.ledgerRetentionWindow),
    "getHealth: ledgerRetentionWindow is not an integer",
  );
  check(/^\d+$/.test(String(health.latestLedgerCloseTime)),
    "getHealth: latestLedgerCloseTime is not a decimal string");
  check(/^\d+$/.test(String(health.oldestLedgerCloseTime)),
    "getHealth: oldestLedgerCloseTime is not a decimal string");
  summary.health = health;

  // requestAirdrop POSTs to getNetwork's friendbotUrl and reads the new account's sequence
  // number from the funding transaction's meta; a second call finds the account funded.
  const airdropped = Keypair.random().publicKey();
  const funded = await server.requestAirdrop(airdropped);
  const fundedAgain = await server.requestAirdrop(airdropped);
  const fetched = await server.getAccount(airdropped);
  check(funded.accountId() === airdropped, "requestAirdrop: wrong account");
  check(funded.sequenceNumber() === fetched.sequenceNumber(),
    `requestAirdrop: sequence ${funded.sequenceNumber()} != getAccount ${fetched.sequenceNumber()}`);
  check(fundedAgain.sequenceNumber() === fetched.sequenceNumber(),
    "requestAirdrop again: not the existing account");
  summary.airdrop = { account: airdropped, sequence: funded.sequenceNumber() };

  const network = await server.getNetwork();
  check(
    network.passphrase === cfg.passphrase,
    `getNetwork: passphrase ${JSON.stringify(network.passphrase)} != ${JSON.stringify(cfg.passphrase)}`,
  );
  summary.network = {
    passphrase: network.passphrase,
    protocolVersion: Number(network.protocolVersion),
    friendbotUrl: network.friendbotUrl ?? null,
  };

  const latest = await server.getLatestLedger();
  check(Number.isInteger(latest.sequence), "getLatestLedger: sequence is not an integer");
  check(latest.sequence >= health.latestLedger, "getLatestLedger: went backwards after getHealth");
  check(/^[0-9a-f]{64}$/.test(latest.id), `getLatestLedger: id ${latest.id} is not a hex hash`);
  check(latest.headerXdr instanceof xdr.LedgerHeader, "getLatestLedger: headerXdr not parsed");
  check(
    latest.headerXdr.ledgerSeq() === latest.sequence,
    "getLatestLedger: headerXdr.ledgerSeq differs from sequence",
  );
  check(
    latest.metadataXdr instanceof xdr.LedgerCloseMeta,
    "getLatestLedger: metadataXdr not parsed",
  );
  summary.latestLedger = {
    sequence: latest.sequence,
    protocolVersion: Number(latest.protocolVersion),
    closeTime: String(latest.closeTime),
  };

  // -- accounts and fees -------------------------------------------------------------------
  const account = await server.getAccount(cfg.source.publicKey());
  check(account instanceof Account, "getAccount: not an Account");
  check(account.accountId() === cfg.source.publicKey(), "getAccount: wrong account id");
  const startSequence = BigInt(account.sequenceNumber());
  const destinationAccount = await server.getAccount(cfg.destination);
  summary.accounts = {
    sourceSequence: startSequence.toString(),
    destinationSequence: destinationAccount.sequenceNumber(),
  };

  const feeStats = await server.getFeeStats();
  const inclusion = feeStats.sorobanInclusionFee;
  check(inclusion && /^[0-9]+$/.test(String(inclusion.p90)), "getFeeStats: no sorobanInclusionFee.p90");
  check(Number.isInteger(feeStats.latestLedger), "getFeeStats: latestLedger is not an integer");
  const fee = String(Math.max(Number(inclusion.p90), 100));
  summary.feeStats = {
    sorobanP90: String(inclusion.p90),
    sorobanMax: String(inclusion.max),
    transactionCount: String(inclusion.transactionCount),
    inclusionFee: fee,
  };

  // -- prepare, sign, send ---------------------------------------------------------------------
  const contractId = Asset.native().contractId(cfg.passphrase);
  const tx = await buildTransfer(server, account, cfg, contractId, fee);
  const hash = tx.hash().toString("hex");
  const sorobanData = tx.toEnvelope().v1().tx().ext().value();
  const resourceFee = sorobanData.resourceFee().toBigInt();
  check(
    BigInt(tx.fee) === BigInt(fee) + resourceFee,
    `prepareTransaction: fee ${tx.fee} != inclusion ${fee} + resource fee ${resourceFee}`,
  );
  const auth = tx.operations[0].auth ?? [];
  check(auth.length === 1, `prepareTransaction: ${auth.length} auth entries, expected 1`);
  check(tx.sequence === (startSequence + 1n).toString(), "prepareTransaction: wrong sequence");
  summary.prepared = {
    hash,
    contractId,
    fee: tx.fee,
    resourceFee: resourceFee.toString(),
    authCredentials: auth[0].credentials().switch().name,
    sequence: tx.sequence,
  };

  const sent = await server.sendTransaction(tx);
  check(sent.status === "PENDING", `sendTransaction: status ${sent.status}, expected PENDING` +
    (sent.errorResult ? ` (${resultCodeName(sent.errorResult)})` : ""));
  check(sent.hash === hash, `sendTransaction: hash ${sent.hash} != ${hash}`);
  check(Number.isInteger(sent.latestLedger), "sendTransaction: latestLedger is not an integer");
  summary.send = {
    status: sent.status,
    hash: sent.hash,
    latestLedger: sent.latestLedger,
    latestLedgerCloseTime: String(sent.latestLedgerCloseTime),
  };

  // A retrying payout system re-sends the same envelope: DUPLICATE while the node still holds it
  // (no errorResult), or ERROR txBAD_SEQ if a ledger closed in between and it already landed.
  const resent = await server.sendTransaction(tx);
  check(resent.hash === hash, "re-send while pending: different hash");
  if (resent.status === "DUPLICATE") {
    check(resent.errorResult === undefined, "re-send while pending: DUPLICATE with errorResult");
  } else {
    check(
      resent.status === "ERROR" && resultCodeName(resent.errorResult) === "txBadSeq",
      `re-send while pending: status ${resent.status}, expected DUPLICATE (or ERROR txBadSeq)`,
    );
  }
  summary.resendWhilePending = {
    status: resent.status,
    errorResultCode: resent.errorResult ? resultCodeName(resent.errorResult) : null,
  };

  // -- confirm ---------------------------------------------------------------------------------
  const landed = await waitFinal(server, hash, deadlineMs);
  check(landed.status === rpc.Api.GetTransactionStatus.SUCCESS,
    `getTransaction: status ${landed.status}, expected SUCCESS` +
      (landed.resultXdr ? ` (${resultCodeName(landed.resultXdr)})` : ""));
  check(landed.txHash === hash, "getTransaction: txHash differs");
  check(Number.isInteger(landed.ledger) && landed.ledger > latest.sequence,
    `getTransaction: ledger ${landed.ledger} not after ${latest.sequence}`);
  check(landed.ledger <= landed.latestLedger, "getTransaction: ledger after latestLedger");
  check(/^[0-9]+$/.test(String(landed.createdAt)), `getTransaction: createdAt ${landed.createdAt}`);
  const createdAt = Number(landed.createdAt);
  check(createdAt >= Number(latest.closeTime), "getTransaction: createdAt before the earlier ledger");
  check(Number.isInteger(landed.applicationOrder) && landed.applicationOrder >= 1,
    "getTransaction: applicationOrder is not a positive integer");
  check(landed.feeBump === false, "getTransaction: feeBump is not false");
  check(landed.resultXdr instanceof xdr.TransactionResult, "getTransaction: resultXdr not parsed");
  check(resultCodeName(landed.resultXdr) === "txSuccess", "getTransaction: result code not txSuccess");
  const feeCharged = landed.resultXdr.feeCharged().toBigInt();
  check(feeCharged > 0n && feeCharged <= BigInt(tx.fee), `getTransaction: feeCharged ${feeCharged}`);
  check(landed.envelopeXdr instanceof xdr.TransactionEnvelope, "getTransaction: envelopeXdr not parsed");
  const echoed = TransactionBuilder.fromXDR(landed.envelopeXdr, cfg.passphrase);
  check(echoed.hash().toString("hex") === hash, "getTransaction: envelopeXdr hashes differently");
  check(landed.resultMetaXdr instanceof xdr.TransactionMeta, "getTransaction: resultMetaXdr not parsed");
  const contractEvents = landed.events?.contractEventsXdr ?? [];
  check(contractEvents.length === 1 && contractEvents[0].length === 1,
    "getTransaction: expected one operation with one contract event");
  const returnValue = landed.returnValue ? landed.returnValue.switch().name : null;
  summary.transaction = {
    status: landed.status,
    ledger: landed.ledger,
    createdAt: String(landed.createdAt),
    applicationOrder: landed.applicationOrder,
    latestLedger: landed.latestLedger,
    resultCode: resultCodeName(landed.resultXdr),
    feeCharged: feeCharged.toString(),
    envelopeHashMatches: true,
    metaVersion: landed.resultMetaXdr.switch(),
    returnValue,
    contractEvents: contractEvents[0].length,
  };

  // -- events ----------------------------------------------------------------------------------
  const events = await server.getEvents({
    startLedger: landed.ledger,
    endLedger: landed.ledger + 1,
    filters: [
      {
        type: "contract",
        contractIds: [contractId],
        topics: [[
          xdr.ScVal.scvSymbol("transfer").toXDR("base64"),
          new Address(cfg.source.publicKey()).toScVal().toXDR("base64"),
          new Address(cfg.destination).toScVal().toXDR("base64"),
          "*",
        ]],
      },
    ],
    limit: 10,
  });
  const ours = events.events.filter((e) => e.txHash === hash);
  check(ours.length === 1, `getEvents: ${ours.length} transfer events of ${hash}, expected 1`);
  check(events.events.length === 1, `getEvents: ${events.events.length} events, expected 1`);
  const event = ours[0];
  check(event.ledger === landed.ledger, `getEvents: event ledger ${event.ledger} != ${landed.ledger}`);
  check(event.type === "contract", `getEvents: event type ${event.type}`);
  check(event.contractId?.contractId() === contractId, "getEvents: contractId not the XLM SAC");
  check(event.topic.every((t) => t instanceof xdr.ScVal), "getEvents: topics not parsed");
  check(event.value instanceof xdr.ScVal, "getEvents: value not parsed");
  const [name, from, to, asset] = event.topic.map((t) => scValToNative(t));
  check(name === "transfer", `getEvents: topic[0] ${name}`);
  check(from === cfg.source.publicKey(), "getEvents: topic[1] is not the source");
  check(to === cfg.destination, "getEvents: topic[2] is not the destination");
  const amountSeen = BigInt(scValToNative(event.value));
  check(amountSeen === cfg.amount, `getEvents: amount ${amountSeen} != ${cfg.amount}`);
  check(typeof event.id === "string" && event.id.length > 0, "getEvents: no event id");
  check(typeof events.cursor === "string" && events.cursor.length > 0, "getEvents: no cursor");
  // -- history: the payout in getTransactions and in getLedgers' close meta ------------------
  const page = await server.getTransactions({ startLedger: landed.ledger, pagination: { limit: 10 } });
  const listed = page.transactions.find((t) => t.txHash === hash);
  check(listed !== undefined, "getTransactions: the payout is not listed from its ledger");
  check(listed.status === "SUCCESS" && listed.ledger === landed.ledger,
    `getTransactions: status ${listed.status}, ledger ${listed.ledger}`);
  check(listed.resultMetaXdr instanceof xdr.TransactionMeta, "getTransactions: meta not parsed");
  check(typeof page.cursor === "string" && /^\d+$/.test(page.cursor), "getTransactions: cursor");
  const ledgers = await server.getLedgers({ startLedger: landed.ledger, pagination: { limit: 1 } });
  check(ledgers.ledgers.length === 1 && ledgers.ledgers[0].sequence === landed.ledger,
    "getLedgers: not the landing ledger");
  const closeMeta = ledgers.ledgers[0].metadataXdr;
  check(closeMeta instanceof xdr.LedgerCloseMeta, "getLedgers: metadataXdr not parsed");
  const processed = closeMeta.value().txProcessing()
    .map((p) => p.result().transactionHash().toString("hex"));
  check(processed.includes(hash), "getLedgers: the payout is not in the ledger's close meta");
  check(ledgers.cursor === String(landed.ledger), `getLedgers: cursor ${ledgers.cursor}`);
  summary.history = {
    transactionsListed: page.transactions.length,
    transactionsCursor: page.cursor,
    ledgerHash: ledgers.ledgers[0].hash,
    ledgerCloseMetaVersion: closeMeta.switch(),
    ledgersCursor: ledgers.cursor,
  };

  summary.events = {
    count: events.events.length,
    id: event.id,
    ledger: event.ledger,
    ledgerClosedAt: event.ledgerClosedAt,
    txHash: event.txHash,
    contractId: event.contractId.contractId(),
    topic: [name, from, to, asset],
    amount: amountSeen.toString(),
    inSuccessfulContractCall: event.inSuccessfulContractCall,
    cursor: events.cursor,
  };

  // -- error paths the SDK must parse ----------------------------------------------------------
  const again = await server.sendTransaction(tx);
  check(again.status === "ERROR", `re-send after success: status ${again.status}, expected ERROR`);
  check(again.errorResult instanceof xdr.TransactionResult,
    "re-send after success: errorResult is not a parsed xdr.TransactionResult");
  summary.resendAfterSuccess = {
    status: again.status,
    hash: again.hash,
    errorResultCode: resultCodeName(again.errorResult),
  };

  // A sequence number that skips ahead (account seq + 5): stellar-core only takes seq + 1.
  const skipped = (startSequence + 1n + 4n).toString();
  const stale = await buildTransfer(
    server, new Account(cfg.source.publicKey(), skipped), cfg, contractId, fee,
  );
  check(stale.hash().toString("hex") !== hash, "bad sequence: same hash as the payout");
  const badSeq = await server.sendTransaction(stale);
  check(badSeq.status === "ERROR", `bad sequence: status ${badSeq.status}, expected ERROR`);
  check(badSeq.errorResult instanceof xdr.TransactionResult,
    "bad sequence: errorResult is not a parsed xdr.TransactionResult");
  summary.badSequence = {
    status: badSeq.status,
    hash: badSeq.hash,
    sequence: stale.sequence,
    errorResultCode: resultCodeName(badSeq.errorResult),
    feeCharged: badSeq.errorResult.feeCharged().toBigInt().toString(),
  };

  const after = await server.getAccount(cfg.source.publicKey());
  summary.accounts.sourceSequenceAfter = after.sequenceNumber();
  check(BigInt(after.sequenceNumber()) === startSequence + 1n,
    `getAccount after: sequence ${after.sequenceNumber()}, expected ${startSequence + 1n}`);

  if (cfg.muxedId !== null) {
    summary.deposit = await payExchangeDeposit(server, cfg, contractId, fee, deadlineMs);
  }

  clearTimeout(watchdog);
  process.stdout.write(`${JSON.stringify(summary)}\n`);
}

main().catch((err) => {
  let message;
  if (err instanceof Mismatch) {
    message = err.message;
  } else if (err instanceof Error) {
    // axios errors carry the request; keep to the message and the HTTP status/body.
    const status = err.response?.status;
    const body = err.response?.data;
    message = `${err.name}: ${err.message}` +
      (status ? ` (HTTP ${status}: ${JSON.stringify(body).slice(0, 500)})` : "");
  } else {
    // jsonrpc.postObject throws the JSON-RPC error object itself.
    message = `JSON-RPC error ${JSON.stringify(err)}`;
  }
  process.stderr.write(`payout_flow: FAIL: ${message}\n`);
  process.exit(1);
});
