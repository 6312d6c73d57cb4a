"""Builders for the XDR structures the sandbox hands out.

Every base64 string the sandbox returns is a real XDR value built with stellar-sdk's generated
classes, so clients that decode them (``TransactionResult.from_xdr`` and friends) see the same
shapes a real Stellar RPC would give. Values that a test harness cannot know (bucket list hashes,
SCP signatures) are zeroed, never invented.
"""

from __future__ import annotations

import hashlib

from stellar_sdk import Asset, Keypair, scval
from stellar_sdk import xdr as x
from stellar_sdk.address import Address

ZERO_HASH = x.Hash(b"\x00" * 32)
BASE_FEE = 100  # stroops per operation: the network minimum inclusion fee
BASE_RESERVE = 5_000_000  # 0.5 XLM, the pubnet/testnet base reserve
TOTAL_COINS = 1_000_000_000_000_000_000  # 100 billion XLM in stroops


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def error_result(
    code: x.TransactionResultCode,
    fee_charged: int = 0,
    results: list[x.OperationResult] | None = None,
) -> x.TransactionResult:
    """A TransactionResult for a transaction rejected before or instead of its operations;
    txFAILED carries the operation results (``results``)."""
    return x.TransactionResult(
        fee_charged=x.Int64(fee_charged),
        result=x.TransactionResultResult(code=code, results=results),
        ext=x.TransactionResultExt(0),
    )


def result_code_name(result_xdr: str) -> str:
    """The code of a base64 TransactionResult: "txBAD_SEQ", "txINSUFFICIENT_FEE", …"""
    return str(x.TransactionResult.from_xdr(result_xdr).result.code.name)


def invoke_result(
    *,
    success: bool,
    fee_charged: int,
    success_hash: bytes = b"\x00" * 32,
    failure: x.InvokeHostFunctionResultCode = (
        x.InvokeHostFunctionResultCode.INVOKE_HOST_FUNCTION_TRAPPED
    ),
) -> x.TransactionResult:
    """txSUCCESS or txFAILED wrapping one InvokeHostFunction operation result.

    On success the operation result carries sha256 of the return value and events, as the host
    does; a failed host call is INVOKE_HOST_FUNCTION_TRAPPED (the contract panicked or an auth /
    balance check failed inside the host).
    """
    if success:
        op_inner = x.InvokeHostFunctionResult(
            code=x.InvokeHostFunctionResultCode.INVOKE_HOST_FUNCTION_SUCCESS,
            success=x.Hash(success_hash),
        )
        tx_code = x.TransactionResultCode.txSUCCESS
    else:
        op_inner = x.InvokeHostFunctionResult(code=failure)
        tx_code = x.TransactionResultCode.txFAILED
    op_result = x.OperationResult(
        code=x.OperationResultCode.opINNER,
        tr=x.OperationResultTr(
            type=x.OperationType.INVOKE_HOST_FUNCTION, invoke_host_function_result=op_inner
        ),
    )
    return x.TransactionResult(
        fee_charged=x.Int64(fee_charged),
        result=x.TransactionResultResult(code=tx_code, results=[op_result]),
        ext=x.TransactionResultExt(0),
    )


def payment_result(code: x.PaymentResultCode) -> x.OperationResult:
    return x.OperationResult(
        code=x.OperationResultCode.opINNER,
        tr=x.OperationResultTr(type=x.OperationType.PAYMENT, payment_result=x.PaymentResult(code)),
    )


def create_account_result(code: x.CreateAccountResultCode) -> x.OperationResult:
    return x.OperationResult(
        code=x.OperationResultCode.opINNER,
        tr=x.OperationResultTr(
            type=x.OperationType.CREATE_ACCOUNT, create_account_result=x.CreateAccountResult(code)
        ),
    )


def account_merge_result(code: x.AccountMergeResultCode, moved: int = 0) -> x.OperationResult:
    """ACCOUNT_MERGE_SUCCESS carries the balance moved (sourceAccountBalance)."""
    success = code == x.AccountMergeResultCode.ACCOUNT_MERGE_SUCCESS
    return x.OperationResult(
        code=x.OperationResultCode.opINNER,
        tr=x.OperationResultTr(
            type=x.OperationType.ACCOUNT_MERGE,
            account_merge_result=x.AccountMergeResult(
                code, source_account_balance=x.Int64(moved) if success else None
            ),
        ),
    )


def op_code_result(code: x.OperationResultCode) -> x.OperationResult:
    """An operation that failed before running (opBAD_AUTH, opNO_ACCOUNT): no inner result."""
    return x.OperationResult(code=code)


def unchecked_op_result(op_type: x.OperationType) -> x.OperationResult:
    """What stellar-core leaves in the results array for an operation it did not reach: the
    operation's type with the zero (success) code."""
    if op_type == x.OperationType.CREATE_ACCOUNT:
        return create_account_result(x.CreateAccountResultCode.CREATE_ACCOUNT_SUCCESS)
    if op_type == x.OperationType.ACCOUNT_MERGE:
        return account_merge_result(x.AccountMergeResultCode.ACCOUNT_MERGE_SUCCESS)
    if op_type == x.OperationType.INVOKE_HOST_FUNCTION:
        inner = x.InvokeHostFunctionResult(
            code=x.InvokeHostFunctionResultCode.INVOKE_HOST_FUNCTION_SUCCESS,
            success=x.Hash(b"\x00" * 32),
        )
        return x.OperationResult(
            code=x.OperationResultCode.opINNER,
            tr=x.OperationResultTr(type=op_type, invoke_host_function_result=inner),
        )
    return payment_result(x.PaymentResultCode.PAYMENT_SUCCESS)


def classic_result(
    *, success: bool, fee_charged: int, results: list[x.OperationResult]
) -> x.TransactionResult:
    """txSUCCESS or txFAILED with every operation's own result (stellar-core applies them
    all and rolls the transaction back when any failed)."""
    code = x.TransactionResultCode.txSUCCESS if success else x.TransactionResultCode.txFAILED
    return x.TransactionResult(
        fee_charged=x.Int64(fee_charged),
        result=x.TransactionResultResult(code=code, results=results),
        ext=x.TransactionResultExt(0),
    )


def account_key(account_id: str) -> x.LedgerKey:
    return x.LedgerKey(
        x.LedgerEntryType.ACCOUNT,
        account=x.LedgerKeyAccount(Keypair.from_public_key(account_id).xdr_account_id()),
    )


def account_entry_data(
    account_id: str, balance: int, seq: int, num_sub_entries: int = 0
) -> x.LedgerEntryData:
    """An AccountEntry with master weight 1 and thresholds 0: the shape friendbot creates."""
    entry = x.AccountEntry(
        account_id=Keypair.from_public_key(account_id).xdr_account_id(),
        balance=x.Int64(balance),
        seq_num=x.SequenceNumber(x.Int64(seq)),
        num_sub_entries=x.Uint32(num_sub_entries),
        inflation_dest=None,
        flags=x.Uint32(0),
        home_domain=x.String32(b""),
        thresholds=x.Thresholds(b"\x01\x00\x00\x00"),
        signers=[],
        ext=x.AccountEntryExt(0),
    )
    return x.LedgerEntryData(x.LedgerEntryType.ACCOUNT, account=entry)


def account_created_meta(account_id: str, balance: int, seq: int, ledger: int) -> x.TransactionMeta:
    """The meta of friendbot's CreateAccount: one created ACCOUNT entry (what the JS SDK's
    requestAirdrop reads the new account's sequence number from)."""
    created = x.LedgerEntry(
        last_modified_ledger_seq=x.Uint32(ledger),
        data=account_entry_data(account_id, balance, seq),
        ext=x.LedgerEntryExt(0),
    )
    change = x.LedgerEntryChange(x.LedgerEntryChangeType.LEDGER_ENTRY_CREATED, created=created)
    return x.TransactionMeta(
        4,
        v4=x.TransactionMetaV4(
            ext=x.ExtensionPoint(0),
            tx_changes_before=x.LedgerEntryChanges([]),
            operations=[
                x.OperationMetaV2(
                    ext=x.ExtensionPoint(0), changes=x.LedgerEntryChanges([change]), events=[]
                )
            ],
            tx_changes_after=x.LedgerEntryChanges([]),
            soroban_meta=None,
            events=[],
            diagnostic_events=[],
        ),
    )


def trustline_key(account_id: str, asset: Asset) -> x.LedgerKey:
    return x.LedgerKey(
        x.LedgerEntryType.TRUSTLINE,
        trust_line=x.LedgerKeyTrustLine(
            account_id=Keypair.from_public_key(account_id).xdr_account_id(),
            asset=asset.to_trust_line_asset_xdr_object(),
        ),
    )


def trustline_entry_data(
    account_id: str, asset: Asset, balance: int, limit: int, authorized: bool
) -> x.LedgerEntryData:
    """A TrustLineEntry; flags carry AUTHORIZED_FLAG (1) when the issuer authorised it."""
    return x.LedgerEntryData(
        x.LedgerEntryType.TRUSTLINE,
        trust_line=x.TrustLineEntry(
            account_id=Keypair.from_public_key(account_id).xdr_account_id(),
            asset=asset.to_trust_line_asset_xdr_object(),
            balance=x.Int64(balance),
            limit=x.Int64(limit),
            flags=x.Uint32(1 if authorized else 0),
            ext=x.TrustLineEntryExt(0),
        ),
    )


def balance_key_val(holder: str) -> x.SCVal:
    """The SAC storage key of a holder's balance: ``Vec[Symbol("Balance"), Address]``."""
    return scval.to_vec([scval.to_symbol("Balance"), scval.to_address(holder)])


def balance_key(contract_id: str, holder: str) -> x.LedgerKey:
    return x.LedgerKey(
        x.LedgerEntryType.CONTRACT_DATA,
        contract_data=x.LedgerKeyContractData(
            contract=Address(contract_id).to_xdr_sc_address(),
            key=balance_key_val(holder),
            durability=x.ContractDataDurability.PERSISTENT,
        ),
    )


def balance_entry_data(contract_id: str, holder: str, amount: int) -> x.LedgerEntryData:
    """SAC balance entry value ``{amount: i128, authorized: bool, clawback: bool}``."""
    val = scval.to_map(
        {
            scval.to_symbol("amount"): scval.to_int128(amount),
            scval.to_symbol("authorized"): scval.to_bool(True),
            scval.to_symbol("clawback"): scval.to_bool(False),
        }
    )
    return x.LedgerEntryData(
        x.LedgerEntryType.CONTRACT_DATA,
        contract_data=x.ContractDataEntry(
            ext=x.ExtensionPoint(0),
            contract=Address(contract_id).to_xdr_sc_address(),
            key=balance_key_val(holder),
            durability=x.ContractDataDurability.PERSISTENT,
            val=val,
        ),
    )


def instance_key(contract_id: str) -> x.LedgerKey:
    return x.LedgerKey(
        x.LedgerEntryType.CONTRACT_DATA,
        contract_data=x.LedgerKeyContractData(
            contract=Address(contract_id).to_xdr_sc_address(),
            key=x.SCVal(x.SCValType.SCV_LEDGER_KEY_CONTRACT_INSTANCE),
            durability=x.ContractDataDurability.PERSISTENT,
        ),
    )


def nonce_key(address: str, nonce: int) -> x.LedgerKey:
    """Address credentials consume a temporary nonce entry owned by the authorizing address."""
    return x.LedgerKey(
        x.LedgerEntryType.CONTRACT_DATA,
        contract_data=x.LedgerKeyContractData(
            contract=Address(address).to_xdr_sc_address(),
            key=x.SCVal(x.SCValType.SCV_LEDGER_KEY_NONCE, nonce_key=x.SCNonceKey(x.Int64(nonce))),
            durability=x.ContractDataDurability.TEMPORARY,
        ),
    )


def soroban_data(
    *,
    read_only: list[x.LedgerKey],
    read_write: list[x.LedgerKey],
    resource_fee: int,
    instructions: int = 3_000_000,
    write_bytes: int | None = None,
    disk_read_bytes: int = 0,
) -> x.SorobanTransactionData:
    resources = x.SorobanResources(
        footprint=x.LedgerFootprint(read_only=read_only, read_write=read_write),
        instructions=x.Uint32(instructions),
        disk_read_bytes=x.Uint32(disk_read_bytes),
        write_bytes=x.Uint32(400 * len(read_write) if write_bytes is None else write_bytes),
    )
    return x.SorobanTransactionData(
        ext=x.SorobanTransactionDataExt(0), resources=resources, resource_fee=x.Int64(resource_fee)
    )


def contract_event(contract_id: str, topics: list[x.SCVal], data: x.SCVal) -> x.ContractEvent:
    return x.ContractEvent(
        ext=x.ExtensionPoint(0),
        contract_id=x.ContractID(x.Hash(Address(contract_id).key)),
        type=x.ContractEventType.CONTRACT,
        body=x.ContractEventBody(0, v0=x.ContractEventV0(topics=topics, data=data)),
    )


def transfer_event(
    contract_id: str, from_: str, to: str, amount: int, asset_name: str
) -> x.ContractEvent:
    """A SAC ``transfer`` event without a muxed id (CAP-46-6, CAP-67): topics
    [transfer, from, to, asset], data i128. ``asset_events.asset_event`` decides the event of
    a movement; this builds the plain case for tests."""
    topics = [
        scval.to_symbol("transfer"),
        scval.to_address(from_),
        scval.to_address(to),
        scval.to_string(asset_name),
    ]
    return contract_event(contract_id, topics, scval.to_int128(amount))


def fee_event(native_id: str, fee_source: str, amount: int, stage: int) -> x.TransactionEvent:
    """CAP-67 fee event of the native SAC: topics [fee, Address(source)], data i128.

    Stage BEFORE_ALL_TXS carries the fee charged up front (inclusion + declared resource fee);
    stage AFTER_TX the refund as a negative amount (as in the stellar-docs getTransaction
    example, openrpc/src/stellar-rpc/examples/Transactions.json, protocol 23).
    """
    topics = [scval.to_symbol("fee"), scval.to_address(fee_source)]
    event = contract_event(native_id, topics, scval.to_int128(amount))
    return x.TransactionEvent(stage=x.TransactionEventStage(stage), event=event)


def transaction_meta(
    events: list[x.ContractEvent],
    return_value: x.SCVal | None,
    fee_events: list[x.TransactionEvent],
    *,
    non_refundable_fee: int,
    refundable_fee: int,
) -> x.TransactionMeta:
    """TransactionMeta v4 (protocol 23): contract events per operation, fee events per
    transaction, the resource fees charged; ledger entry changes are not reported."""
    return x.TransactionMeta(
        4,
        v4=x.TransactionMetaV4(
            ext=x.ExtensionPoint(0),
            tx_changes_before=x.LedgerEntryChanges([]),
            operations=[
                x.OperationMetaV2(
                    ext=x.ExtensionPoint(0), changes=x.LedgerEntryChanges([]), events=events
                )
            ],
            tx_changes_after=x.LedgerEntryChanges([]),
            soroban_meta=x.SorobanTransactionMetaV2(
                ext=x.SorobanTransactionMetaExt(
                    1,
                    v1=x.SorobanTransactionMetaExtV1(
                        ext=x.ExtensionPoint(0),
                        total_non_refundable_resource_fee_charged=x.Int64(non_refundable_fee),
                        total_refundable_resource_fee_charged=x.Int64(refundable_fee),
                        rent_fee_charged=x.Int64(0),
                    ),
                ),
                return_value=return_value,
            ),
            events=fee_events,
            diagnostic_events=[],
        ),
    )


def classic_transaction_meta(
    events_per_op: list[list[x.ContractEvent]], fee_events: list[x.TransactionEvent]
) -> x.TransactionMeta:
    """TransactionMeta v4 of a classic transaction: the SAC events of each operation (CAP-67)
    and the fee event; no Soroban meta; ledger entry changes are not reported."""
    return x.TransactionMeta(
        4,
        v4=x.TransactionMetaV4(
            ext=x.ExtensionPoint(0),
            tx_changes_before=x.LedgerEntryChanges([]),
            operations=[
                x.OperationMetaV2(
                    ext=x.ExtensionPoint(0), changes=x.LedgerEntryChanges([]), events=events
                )
                for events in events_per_op
            ],
            tx_changes_after=x.LedgerEntryChanges([]),
            soroban_meta=None,
            events=fee_events,
            diagnostic_events=[],
        ),
    )


def ledger_header(
    *, protocol: int, seq: int, close_time: int, previous_hash: bytes, max_tx_set_size: int = 1000
) -> x.LedgerHeader:
    return x.LedgerHeader(
        ledger_version=x.Uint32(protocol),
        previous_ledger_hash=x.Hash(previous_hash),
        scp_value=x.StellarValue(
            tx_set_hash=ZERO_HASH,
            close_time=x.TimePoint(x.Uint64(close_time)),
            upgrades=[],
            ext=x.StellarValueExt(x.StellarValueType.STELLAR_VALUE_BASIC),
        ),
        tx_set_result_hash=ZERO_HASH,
        bucket_list_hash=ZERO_HASH,
        ledger_seq=x.Uint32(seq),
        total_coins=x.Int64(TOTAL_COINS),
        fee_pool=x.Int64(0),
        inflation_seq=x.Uint32(0),
        id_pool=x.Uint64(0),
        base_fee=x.Uint32(BASE_FEE),
        base_reserve=x.Uint32(BASE_RESERVE),
        max_tx_set_size=x.Uint32(max_tx_set_size),
        skip_list=[ZERO_HASH, ZERO_HASH, ZERO_HASH, ZERO_HASH],
        ext=x.LedgerHeaderExt(0),
    )


def close_meta(
    header: x.LedgerHeader,
    header_hash: bytes,
    processed: list[tuple[x.TransactionEnvelope, x.TransactionResultPair, x.TransactionMeta]],
    soroban_base_fee: int | None,
    classic_base_fee: int | None = None,
) -> x.LedgerCloseMeta:
    """LedgerCloseMeta v2 (protocol 23): a classic phase (one component), a parallel Soroban
    phase (one cluster), each with its envelopes and a ``base_fee`` when surge pricing
    applied, and each transaction's result and meta in application order."""
    classic_txs = [e for e, _, m in processed if m.v4 is not None and m.v4.soroban_meta is None]
    soroban_txs = [e for e, _, m in processed if m.v4 is not None and m.v4.soroban_meta]
    classic = x.TransactionPhase(
        0,
        v0_components=[
            x.TxSetComponent(
                x.TxSetComponentType.TXSET_COMP_TXS_MAYBE_DISCOUNTED_FEE,
                txs_maybe_discounted_fee=x.TxSetComponentTxsMaybeDiscountedFee(
                    base_fee=None if classic_base_fee is None else x.Int64(classic_base_fee),
                    txs=classic_txs,
                ),
            )
        ]
        if classic_txs
        else [],
    )
    soroban = x.TransactionPhase(
        1,
        parallel_txs_component=x.ParallelTxsComponent(
            base_fee=None if soroban_base_fee is None else x.Int64(soroban_base_fee),
            execution_stages=[x.ParallelTxExecutionStage([x.DependentTxCluster(soroban_txs)])]
            if soroban_txs
            else [],
        ),
    )
    return x.LedgerCloseMeta(
        2,
        v2=x.LedgerCloseMetaV2(
            ext=x.LedgerCloseMetaExt(0),
            ledger_header=x.LedgerHeaderHistoryEntry(
                hash=x.Hash(header_hash), header=header, ext=x.LedgerHeaderHistoryEntryExt(0)
            ),
            tx_set=x.GeneralizedTransactionSet(
                1,
                v1_tx_set=x.TransactionSetV1(
                    previous_ledger_hash=header.previous_ledger_hash, phases=[classic, soroban]
                ),
            ),
            tx_processing=[
                x.TransactionResultMetaV1(
                    ext=x.ExtensionPoint(0),
                    result=pair,
                    fee_processing=x.LedgerEntryChanges([]),
                    tx_apply_processing=meta,
                    post_tx_apply_fee_processing=x.LedgerEntryChanges([]),
                )
                for _, pair, meta in processed
            ],
            upgrades_processing=[],
            scp_info=[],
            total_byte_size_of_live_soroban_state=x.Uint64(0),
            evicted_keys=[],
        ),
    )
