// Datamarket frontend: small progressive enhancements on server-rendered pages.
// Every page works without this script; it only adds live data and polish.

import { initArbiter } from "./arbiter.js";
import { initBuy } from "./buy.js";
import { initHealthPanels } from "./health.js";
import { initOrders } from "./orders.js";
import { initPages } from "./pages.js";
import { initRewards } from "./rewards.js";
import { initWallet } from "./wallet.js";

function initSoonLinks() {
  // Nav entries for sections that are not built yet point at "#": keep them from jumping to the top.
  document.addEventListener("click", (event) => {
    const link = event.target instanceof Element ? event.target.closest('a[aria-disabled="true"]') : null;
    if (link) event.preventDefault();
  });
}

function init() {
  document.documentElement.classList.add("js");
  initSoonLinks();
  initHealthPanels(document);
  initWallet(document);
  initPages(document);
  initBuy(document);
  initOrders(document);
  initRewards(document);
  initArbiter(document);
}

if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", init, { once: true });
} else {
  init();
}
