"""Browser fixtures: Debian's Chromium driven by Playwright (never `playwright install`), and a
test EIP-1193 wallet announced through EIP-6963 that forwards to anvil's unlocked accounts."""
import json
import os
from pathlib import Path

import pytest

# Playwright's sync API keeps an asyncio loop in the test thread; the tests' own ORM calls there
# are synchronous and safe (Django's documented escape hatch for such test runners).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = Path("/usr/bin/chromium")
WALLET_SCRIPT = """
(() => {
  const config = %s;
  const provider = {
    async request({ method, params }) {
      // A test holds a request (window.__walletHold[method], a promise) to see the page while the
      // wallet "waits for the user", or has the user reject it (window.__walletReject[method]).
      const hold = window.__walletHold && window.__walletHold[method];
      if (hold) await hold;
      if (window.__walletReject && window.__walletReject[method]) {
        throw Object.assign(new Error("User rejected the request."), { code: 4001 });
      }
      if (method === "eth_requestAccounts" || method === "eth_accounts") return [config.account];
      const response = await fetch(config.rpc, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params: params || [] }),
      });
      const body = await response.json();
      // As wallets do (EIP-1193), a revert's data comes with the error.
      const error = body.error;
      if (error) {
        throw Object.assign(new Error(error.message), { code: error.code, data: error.data });
      }
      return body.result;
    },
  };
  const info = { uuid: "00000000-0000-4000-8000-000000000001", name: "Test Wallet", rdns: "test.wallet",
                 icon: "data:image/svg+xml,%%3Csvg xmlns='http://www.w3.org/2000/svg'/%%3E" };
  const announce = () => window.dispatchEvent(
    new CustomEvent("eip6963:announceProvider", { detail: Object.freeze({ info, provider }) }));
  window.addEventListener("eip6963:requestProvider", announce);
  announce();
})();
"""


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "browser tests need Debian's chromium: apt-get install chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


WALLET_RPC_PATH = "/__test-wallet-rpc"


def install_wallet(page, *, rpc, account):
    """A real wallet talks to its node from the extension, outside the page's Content-Security-
    Policy; this one lives in the page, so it posts to a same-origin path that Playwright carries
    to anvil (the page's policy stays what the site sends)."""

    def forward(route):
        route.fulfill(response=route.fetch(url=rpc))

    page.route(f"**{WALLET_RPC_PATH}", forward)
    page.add_init_script(WALLET_SCRIPT % json.dumps({"rpc": WALLET_RPC_PATH, "account": account}))
