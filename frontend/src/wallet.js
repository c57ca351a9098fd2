// Wallet sign-in (Sign-In with Ethereum). Wallets are found through EIP-6963 announcements,
// with window.ethereum as the fallback; the server writes the EIP-4361 message with a fresh
// single-use nonce, the wallet signs it (personal_sign) and the server checks it all.

const announced = new Map(); // uuid -> { info, provider }

function listenForWallets() {
  window.addEventListener("eip6963:announceProvider", (event) => {
    const detail = event.detail;
    if (detail && detail.info && detail.provider) announced.set(detail.info.uuid, detail);
  });
  window.dispatchEvent(new Event("eip6963:requestProvider"));
}

export function findWallet() {
  const first = announced.values().next().value;
  if (first) return { name: first.info.name, provider: first.provider };
  if (window.ethereum) return { name: "Browser wallet", provider: window.ethereum };
  return null;
}

function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

async function api(path, body) {
  const response = await fetch(path, {
    method: body === undefined ? "GET" : "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = response.status === 204 ? {} : await response.json().catch(() => ({}));
  if (!response.ok) {
    const message = (data.error && data.error.message) || `The server answered ${response.status}.`;
    throw new Error(message);
  }
  return data;
}

function toHex(text) {
  return "0x" + Array.from(new TextEncoder().encode(text), (b) => b.toString(16).padStart(2, "0")).join("");
}

function shortAddress(address) {
  return `${address.slice(0, 6)}…${address.slice(-4)}`;
}

export async function signIn() {
  const wallet = findWallet();
  if (!wallet) throw new Error("No wallet found in this browser. Install a wallet such as MetaMask, then reload.");
  const accounts = await wallet.provider.request({ method: "eth_requestAccounts" });
  const address = accounts && accounts[0];
  if (!address) throw new Error("The wallet shared no account.");
  const message = (await api("/api/v1/auth/nonce", { address })).message;
  const signature = await wallet.provider.request({ method: "personal_sign", params: [toHex(message), address] });
  return api("/api/v1/auth/sign-in", { message, signature });
}

function render(root, user) {
  const button = root.querySelector("[data-wallet-button]");
  const label = button.querySelector("span");
  const status = root.querySelector("[data-wallet-status]");
  button.disabled = false;
  button.removeAttribute("title");
  const name = status.querySelector("[data-wallet-name]");
  const avatar = status.querySelector("[data-wallet-avatar]");
  // Links for signed-in wallets only (the library, the sales) follow the state.
  for (const item of document.querySelectorAll("[data-account-link]")) item.hidden = !user;
  if (user) {
    root.dataset.signedIn = "true";
    label.textContent = "Sign out";
    name.textContent = user.display_name || shortAddress(user.address);
    status.title = user.address;
    status.setAttribute("aria-label", `Your profile (${user.display_name || user.address})`);
    if (user.avatar_url) avatar.src = user.avatar_url;
    avatar.hidden = !user.avatar_url;
    status.hidden = false;
  } else {
    delete root.dataset.signedIn;
    label.textContent = "Connect wallet";
    status.hidden = true;
    name.textContent = "";
    avatar.hidden = true;
    avatar.removeAttribute("src");
  }
}

/** The header follows a profile change made on this page (display name or avatar). */
export function showUser(doc, user) {
  const root = doc.querySelector("[data-wallet]");
  if (root) render(root, user);
}

function showError(root, message) {
  const error = root.querySelector("[data-wallet-error]");
  error.textContent = message;
  error.hidden = false;
  clearTimeout(showError.timer);
  showError.timer = setTimeout(() => { error.hidden = true; }, 8000);
}

export function initWallet(doc) {
  const root = doc.querySelector("[data-wallet]");
  if (!root) return;
  listenForWallets();
  const button = root.querySelector("[data-wallet-button]");
  // The page came with the signed-in state (data-signed-in, name, avatar): nothing to ask the
  // API, so a signed-out visit makes no failing request.
  button.disabled = false;
  button.removeAttribute("title");
  button.addEventListener("click", async () => {
    button.disabled = true;
    root.querySelector("[data-wallet-error]").hidden = true;
    try {
      let user = null;
      if (root.dataset.signedIn) {
        await api("/api/v1/auth/sign-out", {});
      } else {
        user = await signIn();
      }
      render(root, user);
      // Pages that show signed-in content (My datasets) follow the change.
      document.dispatchEvent(new CustomEvent("wallet:change", { detail: { user } }));
    } catch (error) {
      // A wallet's "user rejected" (EIP-1193 code 4001) is a choice, not a failure.
      const message = error && error.code === 4001 ? "Sign-in cancelled in the wallet." : (error && error.message) || String(error);
      showError(root, message);
    } finally {
      button.disabled = false;
    }
  });
}
