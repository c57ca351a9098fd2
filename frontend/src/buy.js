// Buying a version on its dataset page, from the visitor's wallet: an EIP-2612 permit for exactly
// the price and `purchaseWithPermit` in one transaction where the token has permits, else
// `approve` of exactly the price (never unlimited) and `purchase(listingId, maxPrice)`; the price
// shown on the page is the most the buyer pays (maxPrice). Then the server's nudge until the
// indexer has the order, and the download with the file's sha256 beside the content hash the
// chain lists (getListing, read through the wallet).

import {
  UserError, account, call, chainInfo, chainTime, decodeRevert, decodeValues, encodeCall, ensureChain, ensureGas,
  explainRevert, explainWalletError, formatUnits, preflight, readUint, revertData, rpc, send, shortHex, waitForIndexer,
  waitReceipt,
} from "./chain.js";
import { hashFile } from "./sha256.js";
import { download } from "./orders.js";
import { findWallet, showUser, signIn } from "./wallet.js";

const STEPS = ["signing", "submitted", "confirming", "ready"];
const PERMIT_GAS = 200000; // purchaseWithPermit measures 137,060 (docs/contracts.md), with room
const PERMIT_SECONDS = 1800;

function view(card) {
  const $ = (selector) => card.querySelector(selector);
  const steps = $("[data-buy-steps]");
  const status = $("[data-buy-status]");
  const error = $("[data-buy-error]");
  const switchButton = $("[data-switch-network]");
  return {
    step(name, text) {
      card.dataset.state = name;
      steps.hidden = false;
      const at = STEPS.indexOf(name);
      steps.querySelectorAll("li").forEach((li, i) => {
        li.classList.toggle("is-current", i === at);
        li.classList.toggle("is-done", i < at);
        if (i === at) li.setAttribute("aria-current", "step");
        else li.removeAttribute("aria-current");
      });
      this.say(text);
    },
    say(text, link) {
      status.hidden = !text;
      status.textContent = text || "";
      if (link) {
        status.append(" ");
        const a = document.createElement("a");
        a.href = link.href;
        a.rel = "noopener";
        a.textContent = link.text;
        status.append(a);
      }
    },
    fail(problem) {
      card.dataset.state = "error";
      card.dataset.error = problem.code || "";
      steps.hidden = true;
      status.hidden = true;
      error.hidden = false;
      $("[data-buy-error-text]").textContent = problem.message;
      switchButton.hidden = !problem.action;
      if (problem.action) {
        switchButton.textContent = problem.action.label;
        switchButton.onclick = async () => {
          switchButton.disabled = true;
          try {
            await problem.action.run();
            error.hidden = true;
            card.dataset.state = "buyable";
          } catch (failure) {
            $("[data-buy-error-text]").textContent = explainWalletError(failure).message;
          } finally {
            switchButton.disabled = false;
          }
        };
      }
    },
    clear() {
      error.hidden = true;
      delete card.dataset.error;
    },
  };
}

/** Signs the visitor in with the wallet when the page was loaded signed out; the signed-in address. */
async function signedInAs(card, buyer, ui) {
  const address = card.dataset.address;
  if (address) {
    if (address.toLowerCase() !== buyer.toLowerCase()) {
      throw new UserError(`Your wallet's account ${shortHex(buyer)} is not the one you are signed in with (${shortHex(address)}). Switch accounts in the wallet, or sign out and connect again.`);
    }
    return address;
  }
  ui.step("signing", "Sign in with your wallet: a signature, not a payment…");
  const user = await signIn();
  showUser(document, user);
  card.dataset.address = user.address;
  const hint = card.querySelector("[data-buy-hint]");
  if (hint) hint.hidden = true;
  return user.address;
}

/** The token's EIP-712 domain when it has EIP-2612 permits (EIP-5267 `eip712Domain` and `nonces`), else null. */
async function permitDomain(provider, chain, token, owner) {
  try {
    const domain = decodeValues(["bytes1", "string", "string", "uint256", "address"],
      await call(provider, chain, token, "eip712Domain()", []));
    const nonce = await readUint(provider, chain, token, "nonces(address)", [owner]);
    if (domain[0] !== "0x0f" || domain[3] !== BigInt(chain.chain_id)) return null; // fields other than name, version, chainId, verifyingContract
    return { name: domain[1], version: domain[2], chainId: chain.chain_id, verifyingContract: token, nonce };
  } catch {
    return null;
  }
}

function splitSignature(signature) {
  const hex = signature.replace(/^0x/, "");
  let v = parseInt(hex.slice(128, 130), 16);
  if (v < 27) v += 27;
  return { r: `0x${hex.slice(0, 64)}`, s: `0x${hex.slice(64, 128)}`, v };
}

async function buy(card, ui) {
  const wallet = findWallet();
  if (!wallet) throw new UserError("No wallet found in this browser. Install a wallet such as MetaMask, then reload the page.");
  const provider = wallet.provider;
  ui.step("signing", "Connecting to your wallet…");
  const buyer = await account(provider);
  await signedInAs(card, buyer, ui);
  const chain = await chainInfo();
  await ensureChain(provider, chain);
  const market = chain.market;
  const token = card.dataset.token;
  const listingId = BigInt(card.dataset.listingId);
  const price = BigInt(card.dataset.price); // what the page showed: the most the buyer pays
  const ctx = { price };

  ui.say("Checking your balances…");
  await ensureGas(provider, chain, buyer, PERMIT_GAS);
  const balance = await readUint(provider, chain, token, "balanceOf(address)", [buyer]);
  if (balance < price) {
    throw new UserError(`Your wallet holds ${formatUnits(balance)} USDC, less than the price of ${formatUnits(price)} USDC. Add USDC to ${shortHex(buyer)}, then try again.`, { code: "insufficient_balance" });
  }
  // The market's own checks (buyable, the price, one live order per buyer) before any signature.
  const purchase = { from: buyer, to: market, data: encodeCall(chain, "purchase(uint256,uint256)", [listingId, price]) };
  const allowance = await readUint(provider, chain, token, "allowance(address,address)", [buyer, market]);
  try {
    await rpc(provider, "eth_call", [purchase, "latest"]);
  } catch (error) {
    const revert = decodeRevert(chain, revertData(error));
    if (revert && revert.name === "DataMarketAlreadyPurchased") {
      ui.step("ready", explainRevert(revert));
      showBought(card, null);
      return;
    }
    // Without an allowance the token refuses the transfer once the market's checks passed: expected.
    const refusedTransfer = revert && ["ERC20InsufficientAllowance", "SafeERC20FailedOperation"].includes(revert.name);
    if (!(allowance < price && refusedTransfer)) throw explainWalletError(error, chain, ctx);
  }

  let txHash;
  const domain = allowance >= price ? null : await permitDomain(provider, chain, token, buyer);
  if (domain) {
    ui.step("signing", `Sign the permit in your wallet: it lets the market take exactly ${formatUnits(price)} USDC, for this purchase only.`);
    const deadline = BigInt(Math.max(await chainTime(provider), Math.floor(Date.now() / 1000)) + PERMIT_SECONDS);
    const typed = {
      types: {
        EIP712Domain: [
          { name: "name", type: "string" }, { name: "version", type: "string" },
          { name: "chainId", type: "uint256" }, { name: "verifyingContract", type: "address" },
        ],
        Permit: [
          { name: "owner", type: "address" }, { name: "spender", type: "address" }, { name: "value", type: "uint256" },
          { name: "nonce", type: "uint256" }, { name: "deadline", type: "uint256" },
        ],
      },
      primaryType: "Permit",
      domain: { name: domain.name, version: domain.version, chainId: domain.chainId, verifyingContract: token },
      message: { owner: buyer, spender: market, value: price.toString(), nonce: domain.nonce.toString(), deadline: deadline.toString() },
    };
    const signature = splitSignature(await rpc(provider, "eth_signTypedData_v4", [buyer, JSON.stringify(typed)]));
    const tx = {
      from: buyer, to: market,
      data: encodeCall(chain, "purchaseWithPermit(uint256,uint256,uint256,uint8,bytes32,bytes32)",
        [listingId, price, deadline, signature.v, signature.r, signature.s]),
    };
    await preflight(provider, chain, tx, ctx);
    ui.step("signing", `Confirm the purchase of ${formatUnits(price)} USDC in your wallet…`);
    txHash = await send(provider, tx);
  } else {
    if (allowance < price) {
      const approve = { from: buyer, to: token, data: encodeCall(chain, "approve(address,uint256)", [market, price]) };
      ui.step("signing", `Step 1 of 2: approve exactly ${formatUnits(price)} USDC for the market in your wallet…`);
      const approval = await send(provider, approve);
      ui.say(`Waiting for the approval ${shortHex(approval)} to be mined…`);
      await waitReceipt(provider, chain, approval, ctx);
    }
    await preflight(provider, chain, purchase, ctx);
    ui.step("signing", `${allowance < price ? "Step 2 of 2: confirm" : "Confirm"} the purchase of ${formatUnits(price)} USDC in your wallet…`);
    txHash = await send(provider, purchase);
  }

  const link = chain.explorer_url ? { href: `${chain.explorer_url}/tx/${txHash}`, text: "View it on the explorer" } : null;
  ui.step("submitted", `Submitted: transaction ${shortHex(txHash)}. Waiting for it to be mined…`);
  if (link) ui.say(`Submitted: transaction ${shortHex(txHash)}. Waiting for it to be mined…`, link);
  card.dataset.txHash = txHash;
  const orders = await waitForIndexer(txHash, (wait) => {
    if (wait) ui.step("confirming", `Confirming: ${wait.confirmations} of ${wait.needed} blocks…`);
  });
  const order = orders.find((o) => o.buyer.toLowerCase() === buyer.toLowerCase()) || orders[0];
  ui.step("ready", `Ready: order #${order.order_id} is paid into escrow. You can download the file now.`);
  showBought(card, order);
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** "9 Dec 2026, 11:29", as the server writes dates. */
function formatDate(iso) {
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getDate()} ${MONTHS[d.getMonth()]} ${d.getFullYear()}, ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** The buyer owns the version now: the download replaces the Buy button. */
function showBought(card, order) {
  card.querySelector("[data-bought]").hidden = false;
  const button = card.querySelector("[data-buy-button]");
  if (button) button.hidden = true;
  const line = card.querySelector("[data-bought-order]");
  if (order) line.textContent = `Order #${order.order_id} · in escrow until ${formatDate(order.release_at)}`;
}

// Download and checking the file ---------------------------------------------------------------------

/** The content hash the chain lists for the listing, read through the wallet (null without one on the chain). */
async function listedHash(card) {
  const wallet = findWallet();
  if (!wallet || !card.dataset.listingId) return null;
  try {
    const chain = await chainInfo();
    const current = Number(BigInt(await rpc(wallet.provider, "eth_chainId")));
    if (current !== chain.chain_id) return null;
    const data = await call(wallet.provider, chain, chain.market, "getListing(uint256)", [BigInt(card.dataset.listingId)]);
    // Listing: owner, token, payout, price, contentHash, disputeWindow, active, approved (a static tuple)
    return decodeValues(["address", "address", "address", "uint256", "bytes32"], data)[4];
  } catch {
    return null;
  }
}

function initVerify(card) {
  const panel = card.querySelector("[data-verify]");
  const input = card.querySelector("[data-verify-file]");
  if (!panel || !input) return;
  input.addEventListener("change", async () => {
    const file = input.files[0];
    const result = card.querySelector("[data-verify-result]");
    const bar = card.querySelector("[data-verify-progress]");
    if (!file) return;
    const expected = card.querySelector("[data-chain-hash]").textContent.trim().replace(/^0x/, "").toLowerCase();
    result.hidden = false;
    result.dataset.match = "";
    result.textContent = `Hashing ${file.name}…`;
    bar.hidden = false;
    bar.value = 0;
    const sha = await hashFile(file, (done, total) => { bar.value = total ? Math.round((100 * done) / total) : 100; });
    bar.hidden = true;
    const match = sha === expected;
    result.dataset.match = match ? "true" : "false";
    result.textContent = match
      ? `✓ ${file.name} is the file listed on-chain: its sha256 is the content hash.`
      : `✗ ${file.name} is not the listed file: its sha256 is ${sha}. Do not trust it; download it again.`;
  });
}

async function downloadHere(card, button) {
  const status = card.querySelector("[data-download-status]");
  button.disabled = true;
  status.textContent = "Asking for a download link…";
  try {
    const link = await download(card.dataset.slug, card.dataset.version);
    status.textContent = "Your download has started (the link is valid for 10 minutes).";
    const panel = card.querySelector("[data-verify]");
    panel.hidden = false;
    card.querySelector("[data-file-sha256]").textContent = `0x${link.sha256}`;
    const shown = card.querySelector("[data-chain-hash]");
    const source = card.querySelector("[data-chain-hash-source]");
    const onChain = await listedHash(card);
    if (onChain) {
      shown.textContent = onChain;
      source.textContent = "(getListing, read through your wallet)";
    } else {
      source.textContent = "(as this server mirrors it; connect a wallet on the market's chain to read it from the chain)";
    }
    const match = card.querySelector("[data-hash-match]");
    const same = shown.textContent.trim().toLowerCase() === `0x${link.sha256}`.toLowerCase();
    match.hidden = false;
    match.dataset.match = same ? "true" : "false";
    match.textContent = same
      ? "✓ The file's sha256 is the content hash listed on-chain. Check your copy with the file picker below, or `sha256sum`."
      : "✗ The server's file does not match the content hash listed on-chain. Do not use it; dispute the order from your library.";
  } catch (error) {
    status.textContent = error.message;
  } finally {
    button.disabled = false;
  }
}

export function initBuy(doc) {
  const card = doc.querySelector("[data-buy]");
  if (!card) return;
  const ui = card.querySelector("[data-buy-steps]") ? view(card) : null;
  const button = card.querySelector("[data-buy-button]");
  if (button && ui && card.dataset.state === "buyable") {
    button.disabled = false;
    button.removeAttribute("title");
    button.addEventListener("click", async () => {
      button.disabled = true;
      ui.clear();
      try {
        await buy(card, ui);
      } catch (error) {
        ui.fail(explainWalletError(error, await chainInfo().catch(() => null), { price: BigInt(card.dataset.price) }));
      } finally {
        button.disabled = false;
      }
    });
  }
  const downloadButton = card.querySelector("[data-download]");
  if (downloadButton) downloadButton.addEventListener("click", () => downloadHere(card, downloadButton));
  initVerify(card);
}
