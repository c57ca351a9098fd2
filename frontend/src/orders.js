// The buyer's library and the publisher's sales: downloads, dispute statements, and the order
// actions. Each action is one function (confirmOrder, disputeOrder, withdrawCredit) that resolves
// with its mined transaction's hash: sent from the wallet, or, for a buyer whose wallet has no ETH
// for gas, signed (EIP-712) and sent by the marketplace's operator (confirmBySig, disputeBySig).

import { UserError, account, chainInfo, encodeCall, ensureChain, ensureGas, explainWalletError, preflight, rpc, send, shortHex, sleep, waitForIndexer, waitReceipt } from "./chain.js";
import { clearErrors, messageOf, sendJson, showErrors } from "./http.js";
import { findWallet } from "./wallet.js";

const ACTION_GAS = 150000; // confirm 67,680 (more when a payout becomes a credit), dispute 37,420, withdraw 58,764

/** A download link for a bought version, followed by the browser (the file comes as an attachment). */
export async function download(slug, number) {
  const answer = await sendJson("POST", `/api/v1/datasets/${encodeURIComponent(slug)}/versions/${encodeURIComponent(number)}/download`, {});
  if (!answer.ok) throw new UserError(messageOf(answer.data, answer.status));
  const link = document.createElement("a");
  link.href = answer.data.url;
  link.download = "";
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  return answer.data;
}

/** Sends `signature(values)` to the market from the wallet (which must be `expected`, the signed-in
 *  account, on the market's chain); resolves with the hash once mined. Reverts are explained first. */
async function fromWallet(signature, values, options) {
  const say = options.say;
  const expected = options.expected;
  const wallet = findWallet();
  if (!wallet) throw new UserError("No wallet found in this browser. Install a wallet such as MetaMask, then reload the page.");
  const provider = wallet.provider;
  const chain = await chainInfo();
  say("Connecting to your wallet…");
  const from = await account(provider);
  if (expected && from.toLowerCase() !== expected.toLowerCase()) {
    throw new UserError(`Your wallet's account ${shortHex(from)} is not the signed-in one (${shortHex(expected)}): switch accounts in the wallet, then try again.`);
  }
  await ensureChain(provider, chain);
  const tx = { from, to: chain.market, data: encodeCall(chain, signature, values) };
  await preflight(provider, chain, tx);
  await ensureGas(provider, chain, from, ACTION_GAS);
  say("Confirm the transaction in your wallet…");
  const hash = await send(provider, tx);
  say(`Submitted ${shortHex(hash)}: waiting for it to be mined…`);
  await waitReceipt(provider, chain, hash);
  return hash;
}

const DOMAIN_TYPE = [
  { name: "name", type: "string" }, { name: "version", type: "string" },
  { name: "chainId", type: "uint256" }, { name: "verifyingContract", type: "address" },
];
const ORDER_TYPE = [{ name: "orderId", type: "uint256" }, { name: "nonce", type: "bytes32" }, { name: "deadline", type: "uint256" }];

function randomNonce() {
  return "0x" + Array.from(crypto.getRandomValues(new Uint8Array(32)), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** For a wallet without ETH for gas: the buyer signs the market's ConfirmOrder / DisputeOrder
 *  (EIP-712, no gas) and the marketplace's operator sends confirmBySig / disputeBySig
 *  (POST /api/v1/orders/<id>/relay); resolves with the hash once the chain has it. */
async function relayed(action, orderId, options) {
  const say = options.say;
  const provider = findWallet().provider;
  const chain = await chainInfo();
  const from = await account(provider);
  const primary = action === "confirm" ? "ConfirmOrder" : "DisputeOrder";
  const nonce = randomNonce();
  const deadline = Math.floor(Date.now() / 1000) + 3600;
  const typed = {
    types: { EIP712Domain: DOMAIN_TYPE, [primary]: ORDER_TYPE },
    primaryType: primary,
    domain: { name: "DataMarket", version: "1", chainId: chain.chain_id, verifyingContract: chain.market },
    message: { orderId: String(orderId), nonce, deadline },
  };
  say(`Your wallet has no ETH for gas: sign the ${action} instead (free), and the marketplace sends it for you…`);
  const signature = await rpc(provider, "eth_signTypedData_v4", [from, JSON.stringify(typed)]);
  say("Signed. The marketplace is sending it…");
  const queued = await sendJson("POST", `/api/v1/orders/${encodeURIComponent(orderId)}/relay`, { action, nonce, deadline, signature });
  if (!queued.ok) throw new UserError(messageOf(queued.data, queued.status));
  let relay = queued.data;
  const until = Date.now() + 300000;
  while (relay.status === "pending" || relay.status === "sent") {
    if (Date.now() > until) throw new UserError(`The marketplace has not sent your ${action} yet; it keeps trying. Reload the page in a while.`);
    say(relay.status === "sent" ? `Sent in ${shortHex(relay.tx_hash)}: waiting for the chain…` : "Waiting for the marketplace to send it…");
    await sleep(1000);
    const answer = await sendJson("GET", `/api/v1/relay/${relay.id}`);
    if (answer.ok) relay = answer.data;
  }
  if (relay.status !== "confirmed") throw new UserError(`Your ${action} was not done: ${relay.error || relay.status}.`);
  return relay.tx_hash;
}

/** The wallet's transaction, or, when the wallet has no ETH for gas, the relayed signature. */
async function walletOrRelay(action, orderId, options) {
  try {
    return await fromWallet(`${action}(uint256)`, [BigInt(orderId)], options);
  } catch (error) {
    if (error instanceof UserError && error.code === "no_gas") return relayed(action, orderId, options);
    throw error;
  }
}

/** The buyer confirms receipt: the publisher is paid now (`confirm(orderId)`, or relayed
 *  `confirmBySig` when the wallet has no ETH). `options`: {say, expected}. */
export function confirmOrder(orderId, options) {
  return walletOrRelay("confirm", orderId, options);
}

/** The buyer disputes within the window: the payment is frozen until an arbiter decides
 *  (`dispute(orderId)`, or relayed `disputeBySig` when the wallet has no ETH). */
export function disputeOrder(orderId, options) {
  return walletOrRelay("dispute", orderId, options);
}

/** The credit of `token` the market keeps for the signed-in account, sent to `to` (`withdraw(token, to)`). */
export function withdrawCredit(token, to, options) {
  return fromWallet("withdraw(address,address)", [token, to], options);
}

async function postStatement(orderId, text) {
  return sendJson("POST", `/api/v1/orders/${encodeURIComponent(orderId)}/statements`, { text });
}

/** Waits for the server to read `hash`'s block, saying so; then the page is drawn again from the server. */
async function reloadAfter(hash, say, options) {
  say("Mined. Waiting for the server to read it…");
  await waitForIndexer(hash, (wait) => say(wait ? `Confirming: ${wait.confirmations} of ${wait.needed} blocks…` : "Waiting for it to be mined…"), options);
  say("Done.");
  window.location.reload();
}

function statusOf(card) {
  const line = card.querySelector("[data-order-action-status]");
  return (text) => { if (line) line.textContent = text; };
}

function showProblem(box, error) {
  box.textContent = error.message;
  box.hidden = false;
}

function initOrderCard(card, expected) {
  const orderId = card.dataset.order;
  const say = statusOf(card);
  const problem = card.querySelector("[data-order-error]");
  const buttons = () => card.querySelectorAll(".order-actions button, [data-dispute-form] button");
  const busy = (on) => buttons().forEach((b) => { b.disabled = on; });

  const downloadButton = card.querySelector("[data-order-download]");
  if (downloadButton) {
    downloadButton.addEventListener("click", async () => {
      problem.hidden = true;
      downloadButton.disabled = true;
      say("Asking for a download link…");
      try {
        const link = await download(card.dataset.dataset, card.dataset.version);
        say(`Download started. sha256 ${link.sha256.slice(0, 12)}… is the content hash listed on-chain.`);
      } catch (error) {
        say("");
        showProblem(problem, error);
      } finally {
        downloadButton.disabled = false;
      }
    });
  }

  const confirmButton = card.querySelector("[data-order-confirm]");
  if (confirmButton) {
    confirmButton.addEventListener("click", async () => {
      problem.hidden = true;
      busy(true);
      try {
        const hash = await confirmOrder(orderId, { say: say, expected: expected });
        await reloadAfter(hash, say);
      } catch (error) {
        say("");
        showProblem(problem, explainWalletError(error, await chainInfo().catch(() => null)));
        busy(false);
      }
    });
  }

  const form = card.querySelector("[data-dispute-form]");
  const opener = card.querySelector("[data-order-dispute-open]");
  if (form && opener) {
    const toggle = (open) => {
      form.hidden = !open;
      opener.setAttribute("aria-expanded", open ? "true" : "false");
      if (open) form.querySelector("textarea").focus();
    };
    opener.addEventListener("click", () => toggle(form.hidden));
    form.querySelector("[data-dispute-cancel]").addEventListener("click", () => toggle(false));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearErrors(form);
      problem.hidden = true;
      const text = form.querySelector('[data-field="text"]').value.trim();
      if (!text) {
        showErrors(form, { error: { message: "Say what is wrong first.", fields: { text: ["Your statement goes to the arbiter with the dispute."] } } });
        return;
      }
      busy(true);
      try {
        // A dispute already sent (the statement failed afterwards) is not sent twice.
        let hash = form.dataset.disputed;
        if (!hash) {
          hash = await disputeOrder(orderId, { say: say, expected: expected });
          form.dataset.disputed = hash;
          say("Mined. Waiting for the server to read it…");
          await waitForIndexer(hash, null);
        }
        say("Sending your statement…");
        const answer = await postStatement(orderId, text);
        if (!answer.ok) {
          say("The dispute is open, but your statement was not saved:");
          showErrors(form, answer.data, answer.status);
          busy(false);
          return;
        }
        say("Disputed.");
        window.location.reload();
      } catch (error) {
        say("");
        showErrors(form, { error: { message: explainWalletError(error, await chainInfo().catch(() => null)).message } });
        busy(false);
      }
    });
  }
}

function initStatementForms(doc) {
  doc.querySelectorAll("[data-statement-form]").forEach((form) => {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearErrors(form);
      const text = form.querySelector('[data-field="text"]').value.trim();
      if (!text) {
        showErrors(form, { error: { message: "Write something first.", fields: { text: ["The arbiter reads this."] } } });
        return;
      }
      const submit = form.querySelector("[data-submit]");
      submit.disabled = true;
      const answer = await postStatement(form.dataset.order, text);
      if (!answer.ok) {
        showErrors(form, answer.data, answer.status);
        submit.disabled = false;
        return;
      }
      window.location.reload();
    });
  });
}

function initWithdraw(doc, expected) {
  doc.querySelectorAll("[data-withdraw]").forEach((button) => {
    const row = button.closest("[data-credit-token]");
    const line = row.querySelector("[data-withdraw-status]");
    const say = (text) => { line.textContent = text; };
    const problem = doc.querySelector("[data-withdraw-error]");
    button.addEventListener("click", async () => {
      problem.hidden = true;
      button.disabled = true;
      try {
        const hash = await withdrawCredit(button.dataset.token, button.dataset.to, { say: say, expected: expected });
        await reloadAfter(hash, say, { allowNone: true });
      } catch (error) {
        say("");
        showProblem(problem, explainWalletError(error, await chainInfo().catch(() => null)));
        button.disabled = false;
      }
    });
  });
}

export function initOrders(doc) {
  const page = doc.querySelector("[data-library], [data-sales]");
  if (!page) return;
  const expected = page.dataset.address || "";
  page.querySelectorAll("[data-library] [data-order]").forEach((card) => initOrderCard(card, expected));
  initStatementForms(doc);
  initWithdraw(doc, expected);
}
