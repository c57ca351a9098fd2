// The contributor's rewards page: the claim button sends `claim(account, cumulative, proof)` to the
// reward distributor from the wallet, then waits for the server to index the Claimed event and
// reloads. Everything else on the page is server-rendered.

import { UserError, account, chainInfo, ensureChain, ensureGas, explainWalletError, preflight, send, shortHex, waitForIndexer, waitReceipt } from "./chain.js";
import { findWallet } from "./wallet.js";

const CLAIM_GAS = 120000; // a claim with a 20-level proof: about 60,000

const word = (hex) => hex.replace(/^0x/i, "").toLowerCase().padStart(64, "0");

/** Calldata of claim(address,uint256,bytes32[]): the array's head is an offset (3 words in). */
export function claimCalldata(selector, accountAddress, cumulative, proof) {
  return selector + word(accountAddress) + BigInt(cumulative).toString(16).padStart(64, "0")
    + (96).toString(16).padStart(64, "0") + proof.length.toString(16).padStart(64, "0")
    + proof.map(word).join("");
}

async function claim(button, say) {
  const wallet = findWallet();
  if (!wallet) throw new UserError("No wallet found in this browser. Install a wallet such as MetaMask, then reload the page.");
  const provider = wallet.provider;
  const chain = await chainInfo();
  const selector = chain.abi.calls["claim(address,uint256,bytes32[])"];
  if (!selector || !button.dataset.distributor) throw new UserError("The reward distributor is not deployed on this server's chain.");
  say("Connecting to your wallet…");
  const from = await account(provider);
  const proof = button.dataset.proof ? button.dataset.proof.split(",") : [];
  await ensureChain(provider, chain);
  // Anyone may send the claim; the tokens always go to the account in the leaf.
  const tx = { from, to: button.dataset.distributor, data: claimCalldata(selector, button.dataset.account, button.dataset.cumulative, proof) };
  await preflight(provider, chain, tx);
  await ensureGas(provider, chain, from, CLAIM_GAS);
  say("Confirm the claim in your wallet…");
  const hash = await send(provider, tx);
  say(`Submitted ${shortHex(hash)}: waiting for it to be mined…`);
  await waitReceipt(provider, chain, hash);
  // The server's indexer reads the transaction's block (with the chain's confirmations), then the
  // page shows the claim.
  await waitForIndexer(hash, (progress) => {
    say(progress ? `Claimed: waiting for ${progress.needed} confirmations (${progress.confirmations} so far)…` : "Claimed: waiting for the block…");
  }, { allowNone: true });
  window.location.reload();
}

export function initRewards(doc) {
  const button = doc.querySelector("[data-claim]");
  if (!button) return;
  const line = doc.querySelector("[data-claim-status]");
  const problem = doc.querySelector("[data-claim-error]");
  const say = (text) => { line.textContent = text; };
  button.addEventListener("click", async () => {
    problem.hidden = true;
    button.disabled = true;
    try {
      await claim(button, say);
    } catch (error) {
      say("");
      problem.textContent = explainWalletError(error, await chainInfo().catch(() => null)).message;
      problem.hidden = false;
      button.disabled = false;
    }
  });
}
