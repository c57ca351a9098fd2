// The node binding page (/node/bind): the signed-in wallet signs the EIP-712 Bind that the node's
// device key signed (eth_signTypedData_v4, the same typed data as marketplace/rewards/signing.py),
// and the page posts both signatures; devices bound to the wallet can be unbound from here.

import { sendJson, messageOf } from "./http.js";

const announced = [];
window.addEventListener("eip6963:announceProvider", (event) => {
  if (event.detail && event.detail.provider) announced.push(event.detail.provider);
});
window.dispatchEvent(new Event("eip6963:requestProvider"));

function provider() {
  const found = announced[0] || window.ethereum;
  if (!found) throw new Error("No wallet found in this browser. Install a wallet such as MetaMask, then reload.");
  return found;
}

const FIELDS = [
  { name: "device", type: "address" }, { name: "wallet", type: "address" },
  { name: "nonce", type: "bytes32" }, { name: "issuedAt", type: "uint256" },
];

export function bindTypedData(chainId, bind) {
  return {
    types: {
      EIP712Domain: [{ name: "name", type: "string" }, { name: "version", type: "string" }, { name: "chainId", type: "uint256" }],
      Bind: FIELDS,
    },
    primaryType: "Bind",
    domain: { name: "DataMarket Node", version: "1", chainId },
    message: { device: bind.device, wallet: bind.wallet, nonce: bind.nonce, issuedAt: String(bind.issuedAt) },
  };
}

async function post(url, body) {
  const answer = await sendJson("POST", url, body);
  if (!answer.ok) throw new Error(messageOf(answer.data, answer.status));
  return answer.data;
}

function initBind(page) {
  const panel = page.querySelector("[data-bind]");
  const button = panel && panel.querySelector("[data-bind-sign]");
  if (!button) return;
  const status = panel.querySelector("[data-bind-status]");
  const error = panel.querySelector("[data-form-error]");
  button.addEventListener("click", async () => {
    error.hidden = true;
    button.disabled = true;
    const d = panel.dataset;
    try {
      const wallet = provider();
      const accounts = await wallet.request({ method: "eth_requestAccounts" });
      const account = accounts && accounts[0];
      if (!account || account.toLowerCase() !== d.wallet.toLowerCase()) {
        throw new Error(`Switch your wallet to the account ${d.wallet} and try again.`);
      }
      status.textContent = "Sign the binding in your wallet…";
      const typed = bindTypedData(Number(page.dataset.chainId), {
        device: d.device, wallet: d.wallet, nonce: d.nonce, issuedAt: d.issuedAt,
      });
      const signature = await wallet.request({ method: "eth_signTypedData_v4", params: [account, JSON.stringify(typed)] });
      status.textContent = "Binding…";
      const answer = await post("/api/v1/node/bind", {
        device: d.device, wallet: d.wallet, nonce: d.nonce, issued_at: Number(d.issuedAt),
        device_signature: d.deviceSignature, wallet_signature: signature,
      });
      status.textContent = answer.status === "pending"
        ? `The device is bound to another wallet: it moves to yours on ${new Date(answer.effective_at).toLocaleString()}, unless that wallet keeps it.`
        : "Bound. Start the node with: datamarket-node run";
    } catch (exc) {
      status.textContent = "";
      error.textContent = exc && exc.message ? exc.message : String(exc);
      error.hidden = false;
      button.disabled = false;
    }
  });
}

function initUnbind(page) {
  page.querySelectorAll("[data-node-device]").forEach((item) => {
    const button = item.querySelector("[data-node-unbind]");
    const error = item.querySelector("[data-node-error]");
    button.addEventListener("click", async () => {
      button.disabled = true;
      error.hidden = true;
      try {
        await post("/api/v1/node/unbind", { device: item.dataset.nodeDevice });
        item.remove();
      } catch (exc) {
        error.textContent = exc.message;
        error.hidden = false;
        button.disabled = false;
      }
    });
  });
}

function init() {
  const page = document.querySelector("[data-node-bind-page]");
  if (!page) return;
  initBind(page);
  initUnbind(page);
}

if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", init, { once: true });
} else {
  init();
}
