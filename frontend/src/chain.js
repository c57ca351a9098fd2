// The market, through the visitor's wallet (EIP-1193): the few calls the pages make, encoded by
// hand (static ABI words), reads with eth_call, sending and waiting for receipts, the network
// check, the server's nudge that reads a transaction's block, and every revert in plain words.
// The selectors and the table of errors come from the server (GET /api/v1/chain, computed from
// the compiled contracts), so nothing here needs a keccak.

import { messageOf, sendJson } from "./http.js";

const TOKEN_DECIMALS = 6;
const POLL_MS = 1000;

/** An error whose message is already meant for the visitor. `action` offers a way out. */
export class UserError extends Error {
  constructor(message, options) {
    super(message);
    this.action = (options && options.action) || null;
    this.code = (options && options.code) || "";
  }
}

// The server's chain description -------------------------------------------------------------------

let chainPromise = null;

/** {chain_id, chain_name, market, confirmations, explorer_url, abi: {calls, errors}}, fetched once. */
export function chainInfo() {
  if (!chainPromise) {
    chainPromise = fetch("/api/v1/chain", { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(async (response) => {
        const data = await response.json().catch(() => null);
        if (!response.ok || !data) throw new UserError(messageOf(data, response.status));
        if (!data.market) throw new UserError("The market contract is not deployed on this server's chain yet; try again later.");
        return data;
      })
      .catch((error) => {
        chainPromise = null;
        throw error instanceof UserError ? error : new UserError("The server cannot be reached; check the connection and try again.");
      });
  }
  return chainPromise;
}

// Amounts ---------------------------------------------------------------------------------------------

/** Base units as token units, exactly: 25000000n -> "25", 1500000n -> "1.5", with thousands commas. */
export function formatUnits(value, decimals = TOKEN_DECIMALS) {
  const units = BigInt(value);
  const sign = units < 0n ? "-" : "";
  const abs = units < 0n ? -units : units;
  const scale = 10n ** BigInt(decimals);
  const whole = (abs / scale).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  const frac = (abs % scale).toString().padStart(decimals, "0").replace(/0+$/, "");
  return `${sign}${whole}${frac ? `.${frac}` : ""}`;
}

export function shortHex(value) {
  return value && value.length > 12 ? `${value.slice(0, 6)}…${value.slice(-4)}` : value;
}

// ABI: static words only (and strings when decoding) ----------------------------------------------

const strip = (hex) => hex.replace(/^0x/i, "");

function encodeWord(type, value) {
  if (type === "address") return strip(value).toLowerCase().padStart(64, "0");
  if (type === "bytes32") return strip(value).padEnd(64, "0");
  if (type === "bool") return (value ? "1" : "0").padStart(64, "0");
  if (/^uint\d*$/.test(type)) {
    const n = BigInt(value);
    if (n < 0n) throw new Error(`${type} cannot be negative`);
    return n.toString(16).padStart(64, "0");
  }
  throw new Error(`cannot encode ${type}`);
}

/** Calldata of `signature` ("purchase(uint256,uint256)") with `values`, from the server's selectors. */
export function encodeCall(chain, signature, values = []) {
  const selector = chain.abi.calls[signature];
  if (!selector) throw new Error(`the server named no selector for ${signature}`);
  const types = signature.slice(signature.indexOf("(") + 1, -1).split(",").filter(Boolean);
  return selector + types.map((type, i) => encodeWord(type, values[i])).join("");
}

function decodeString(hex, offsetWord) {
  const start = Number(BigInt(`0x${offsetWord}`)) * 2;
  const length = Number(BigInt(`0x${hex.slice(start, start + 64)}`));
  const bytes = hex.slice(start + 64, start + 64 + length * 2);
  return new TextDecoder().decode(Uint8Array.from(bytes.match(/../g) || [], (b) => parseInt(b, 16)));
}

/** ABI-decoded `types` from `data` (0x-hex): numbers as BigInt, addresses and bytes as 0x-hex. */
export function decodeValues(types, data) {
  const hex = strip(data);
  return types.map((type, i) => {
    const word = hex.slice(i * 64, i * 64 + 64);
    if (word.length < 64) return null;
    if (type === "address") return `0x${word.slice(24)}`;
    if (type === "bool") return BigInt(`0x${word}`) !== 0n;
    if (/^uint\d*$/.test(type)) return BigInt(`0x${word}`);
    if (/^int\d*$/.test(type)) return BigInt.asIntN(256, BigInt(`0x${word}`));
    if (type === "string") return decodeString(hex, word);
    if (/^bytes\d+$/.test(type)) return `0x${word.slice(0, 2 * Number(type.slice(5)))}`;
    return null; // dynamic arrays and bytes: not needed here
  });
}

// Reverts -------------------------------------------------------------------------------------------

/** The revert data an EIP-1193 error carries, wherever the wallet put it (or null). */
export function revertData(error) {
  const seen = new Set();
  const look = (value) => {
    if (!value || seen.has(value)) return null;
    if (typeof value === "string") return /^0x[0-9a-f]{8}/i.test(value) ? value : null;
    if (typeof value !== "object") return null;
    seen.add(value);
    return look(value.data) || look(value.error) || look(value.cause) || look(value.originalError);
  };
  const found = look(error);
  if (found) return found;
  // Some nodes name only the selector in the message ("custom error 0xdf569df5: ...").
  const match = String((error && error.message) || "").match(/custom error (0x[0-9a-f]{8})/i);
  return match ? match[1] : null;
}

/** {name, args} of a revert, from the server's table of the market's and the token's errors. */
export function decodeRevert(chain, data) {
  if (!data || data.length < 10) return null;
  const entry = chain.abi.errors[data.slice(0, 10).toLowerCase()];
  if (!entry) return { name: "", selector: data.slice(0, 10), args: [] };
  return { name: entry.name, args: decodeValues(entry.types, `0x${data.slice(10)}`) };
}

const ORDER_STATUS = ["none", "open", "disputed", "released", "refunded", "resolved"];

/** The contract's refusal in words; `ctx.price` (BigInt) helps with a few. */
export function explainRevert(revert, ctx = {}) {
  const a = revert.args || [];
  const usdc = (n) => `${formatUnits(n)} USDC`;
  switch (revert.name) {
    case "DataMarketPriceAboveMax":
      return `The price changed: it is now ${usdc(a[0])}, and you agreed to pay at most ${usdc(a[1])} when you opened this page. Nothing was charged. Reload the page to see the new price.`;
    case "DataMarketNotBuyable":
      return "This version cannot be bought right now: its listing is paused by the publisher or not approved by a moderator. Nothing was charged.";
    case "DataMarketAlreadyPurchased":
      return `You already bought this version (order #${a[2]}), and it is still yours. Download it below or from your library.`;
    case "DataMarketTokenNotAllowed":
      return "The market no longer accepts this listing's token, so it cannot be bought. Nothing was charged.";
    case "DataMarketUnderpaid":
      return "The token delivered less than the price (it takes a fee on transfers), so the market refused the payment.";
    case "DataMarketNotBuyer":
      return "Only the wallet that bought this order may do that: switch your wallet to the buyer's account.";
    case "DataMarketOrderNotOpen":
      return `This order is ${ORDER_STATUS[Number(a[1])] || "settled"} on-chain, so it can no longer be confirmed or disputed. Reload the page to see its state.`;
    case "DataMarketDisputeWindowClosed":
      return `The dispute window of this order closed on ${new Date(Number(a[1]) * 1000).toLocaleString()}: it can no longer be disputed.`;
    case "DataMarketUnknownOrder":
      return "The market knows no such order (the chain may have been reset). Reload the page.";
    case "DataMarketNothingToWithdraw":
      return "There is nothing to withdraw: this credit was already withdrawn. Reload the page.";
    case "DataMarketZeroAddress":
      return "The receiving address is missing.";
    case "EnforcedPause":
      return "The market is paused for maintenance: buying is stopped for now (confirming, disputing and withdrawing still work). Try again later.";
    case "ERC20InsufficientBalance":
      return `Your wallet holds ${usdc(a[1])}, less than the ${usdc(a[2])} needed. Nothing was charged.`;
    case "ERC20InsufficientAllowance":
      return `The market may take only ${usdc(a[1])} of your USDC, less than the ${usdc(a[2])} price: approve the price first (the Buy button does it).`;
    case "ERC2612ExpiredSignature":
      return "The permit you signed has expired; click Buy to sign a new one.";
    case "ERC2612InvalidSigner":
      return "The token refused the permit signature (it was signed for another account or chain). Click Buy to try again.";
    case "RewardDistributorInvalidProof":
      return "This proof is not in the root the distributor pays now (a newer root matured since the page was loaded). Reload the page for the current proof; nothing was paid.";
    case "RewardDistributorRootSuspended":
      return `Claims are paused: epoch ${a[0]}'s root is suspended. They resume when a newer root becomes claimable; nothing you earned is lost.`;
    case "RewardDistributorNoRoot":
      return "No reward root is claimable yet. Try again once an epoch's root has matured.";
    case "SafeERC20FailedOperation":
      return "The token refused the transfer.";
    case "Error":
      return `The contract refused: ${a[0]}`;
    case "Panic":
      return `The contract failed (panic ${a[0]}).`;
    default:
      return revert.name
        ? `The contract refused the transaction (${revert.name}). Nothing was charged.`
        : `The contract refused the transaction (error ${revert.selector}). Nothing was charged.`;
  }
}

// Talking to the wallet --------------------------------------------------------------------------------

export function rpc(provider, method, params = []) {
  return provider.request({ method, params });
}

export async function account(provider) {
  const accounts = await rpc(provider, "eth_requestAccounts");
  if (!accounts || !accounts[0]) throw new UserError("The wallet shared no account.");
  return accounts[0];
}

/** Reads `signature` of `to`; the raw 0x-hex answer. */
export function call(provider, chain, to, signature, values, from) {
  return rpc(provider, "eth_call", [{ ...(from ? { from } : {}), to, data: encodeCall(chain, signature, values) }, "latest"]);
}

export async function readUint(provider, chain, to, signature, values) {
  return decodeValues(["uint256"], await call(provider, chain, to, signature, values))[0];
}

/** The wallet is on the server's chain, or a UserError that offers wallet_switchEthereumChain. */
export async function ensureChain(provider, chain) {
  const current = Number(BigInt(await rpc(provider, "eth_chainId")));
  if (current === chain.chain_id) return;
  throw new UserError(
    `Your wallet is on the wrong network (chain ${current}). This market runs on ${chain.chain_name} (chain ${chain.chain_id}): switch networks, then try again.`,
    { code: "wrong_network", action: { label: `Switch to ${chain.chain_name}`, run: () => switchChain(provider, chain) } },
  );
}

export async function switchChain(provider, chain) {
  try {
    await rpc(provider, "wallet_switchEthereumChain", [{ chainId: `0x${chain.chain_id.toString(16)}` }]);
  } catch (error) {
    if (error && error.code === 4902) {
      throw new UserError(`Your wallet does not know ${chain.chain_name} yet: add chain ${chain.chain_id} in the wallet, then try again.`);
    }
    if (error && (error.code === 4200 || error.code === -32601)) { // the wallet has no such method
      throw new UserError(`Your wallet cannot switch networks from this page: choose ${chain.chain_name} (chain ${chain.chain_id}) in the wallet, then try again.`);
    }
    throw error;
  }
}

/** Enough ETH for about `gas` at the current gas price, or a UserError that says so. */
export async function ensureGas(provider, chain, from, gas) {
  const balance = await rpc(provider, "eth_getBalance", [from, "latest"]);
  const price = await rpc(provider, "eth_gasPrice");
  if (BigInt(balance) < BigInt(price) * BigInt(gas)) {
    throw new UserError(`Your wallet has no ETH on ${chain.chain_name} to pay the network fee (gas) for this transaction. Add a little ETH to ${shortHex(from)}, then try again.`, { code: "no_gas" });
  }
}

/** Simulates the transaction: a revert becomes a UserError in words before anything is signed. */
export async function preflight(provider, chain, tx, ctx) {
  try {
    return await rpc(provider, "eth_estimateGas", [tx]);
  } catch (error) {
    throw explainWalletError(error, chain, ctx);
  }
}

/** eth_sendTransaction; the hash. */
export function send(provider, tx) {
  return rpc(provider, "eth_sendTransaction", [tx]);
}

/** The receipt once mined (polled through the wallet); a reverted one is a UserError. */
export async function waitReceipt(provider, chain, hash, ctx, timeoutMs = 180000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const receipt = await rpc(provider, "eth_getTransactionReceipt", [hash]);
    if (receipt) {
      if (BigInt(receipt.status) === 1n) return receipt;
      throw new UserError(`Transaction ${shortHex(hash)} failed on-chain (it was reverted): nothing changed but the network fee.`);
    }
    await sleep(500);
  }
  throw new UserError(`Transaction ${shortHex(hash)} was not mined within ${Math.round(timeoutMs / 60000)} minutes; check it in your wallet.`);
}

/** Any error from the wallet or the chain as a UserError in words. */
export function explainWalletError(error, chain, ctx = {}) {
  if (error instanceof UserError) return error;
  if (error && (error.code === 4001 || error.code === "ACTION_REJECTED")) {
    return new UserError("You rejected the request in your wallet: nothing was signed or sent.", { code: "rejected" });
  }
  const data = chain ? revertData(error) : null;
  if (data) return new UserError(explainRevert(decodeRevert(chain, data), ctx), { code: "revert" });
  const message = String((error && error.message) || error || "");
  if (/insufficient funds/i.test(message)) {
    return new UserError(`Your wallet has no ETH${chain ? ` on ${chain.chain_name}` : ""} to pay the network fee (gas). Add a little ETH, then try again.`, { code: "no_gas" });
  }
  if (error && error.code === 4100) return new UserError("The wallet has not allowed this site to use the account: connect it in the wallet, then try again.");
  return new UserError(message || "The wallet failed without saying why.");
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// The server's nudge ---------------------------------------------------------------------------------------

/**
 * POST /api/v1/purchases {tx_hash} until the indexer has read the transaction's block: the
 * orders it made or moved. `progress({confirmations, needed})` while the server waits for
 * confirmations, `progress(null)` while it is not mined. `allowNone`: a transaction that moved no
 * order (a withdrawal) ends the wait with [] instead of an error.
 */
export async function waitForIndexer(txHash, progress, options) {
  const allowNone = Boolean(options && options.allowNone);
  const deadline = Date.now() + ((options && options.timeoutMs) || 600000);
  let failures = 0;
  while (Date.now() < deadline) {
    const answer = await sendJson("POST", "/api/v1/purchases", { tx_hash: txHash });
    const code = answer.data && answer.data.error && answer.data.error.code;
    if (answer.status === 200) return answer.data;
    if (answer.status === 202) {
      if (progress) progress(answer.data);
    } else if (answer.status === 409 && code === "not_mined") {
      if (progress) progress(null);
    } else if (answer.status === 404 && code === "no_order" && allowNone) {
      return [];
    } else if (answer.status === 404 && code === "no_order") {
      throw new UserError(`Transaction ${shortHex(txHash)} made no order: it failed on-chain. Nothing was bought; only the network fee was spent.`);
    } else if (answer.status === 429) {
      throw new UserError(messageOf(answer.data, answer.status));
    } else if (++failures > 30) {
      throw new UserError(`${messageOf(answer.data, answer.status)} Your transaction ${shortHex(txHash)} is on-chain; reload the page in a while.`);
    }
    await sleep(POLL_MS);
  }
  throw new UserError(`The server has not seen transaction ${shortHex(txHash)} yet; reload the page in a while.`);
}

/** The latest block's time (the chain's clock, which a test chain may have moved ahead). */
export async function chainTime(provider) {
  const block = await rpc(provider, "eth_getBlockByNumber", ["latest", false]);
  return block ? Number(BigInt(block.timestamp)) : Math.floor(Date.now() / 1000);
}
