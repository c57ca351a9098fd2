// The arbiters' pages, when the operator key is not the arbiter: the connected wallet sends the prepared transaction
// (a dispute's resolve(orderId, refundBps) on /moderation/disputes/<id>, the returns of pushed authorizations'
// returnSurplusBatch(items) on /moderation/returns), and the server's nudge reads its
// block so that the order's new state (and the audit log's confirmation) shows at once.

import { UserError, account, chainInfo, ensureChain, explainWalletError, preflight, send, shortHex, waitForIndexer, waitReceipt } from "./chain.js";
import { findWallet } from "./wallet.js";

// A prepared transaction that moves no order (surplus returns) is done once the server has read its block.
async function sendResolution(tx, say, movesNoOrder = false) {
  const wallet = findWallet();
  if (!wallet) throw new UserError("No wallet found in this browser: send the transaction above from the arbiter's wallet.");
  const provider = wallet.provider;
  const chain = await chainInfo();
  say("Connecting to your wallet…");
  const from = await account(provider);
  if (tx.from && from.toLowerCase() !== tx.from.toLowerCase()) {
    throw new UserError(`Your wallet's account ${shortHex(from)} is not the arbiter (${shortHex(tx.from)}): switch accounts in the wallet, then try again.`);
  }
  await ensureChain(provider, chain);
  const call = { from, to: tx.to, data: tx.data };
  await preflight(provider, chain, call);
  say("Confirm the transaction in your wallet…");
  const hash = await send(provider, call);
  say(`Sent ${shortHex(hash)}: waiting for it to be mined…`);
  await waitReceipt(provider, chain, hash);
  say(`Mined: waiting for the server to read ${shortHex(hash)}…`);
  await waitForIndexer(hash, (progress) => {
    if (progress) say(`Mined: ${progress.confirmations} of ${progress.needed} confirmations…`);
  }, { allowNone: movesNoOrder });
  return hash;
}

export function initArbiter(doc) {
  for (const button of doc.querySelectorAll("[data-send-resolve], [data-send-prepared]")) {
    const status = button.parentElement.querySelector("[data-send-resolve-status], [data-send-prepared-status]");
    const say = (text) => { status.textContent = text; };
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        const hash = await sendResolution(JSON.parse(button.dataset.transaction), say, button.hasAttribute("data-send-prepared"));
        say(`Sent on-chain in ${shortHex(hash)}.`);
        button.closest("[data-prepared]").dataset.sent = hash;
        window.location.reload();
      } catch (error) {
        say(explainWalletError(error).message);
        button.disabled = false;
      }
    });
  }
}
