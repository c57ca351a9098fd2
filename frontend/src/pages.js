// Enhancements for the catalog, dataset and publisher pages. Every page renders on the server
// and works without this file; here: auto-applying filters, copy buttons, live analysis
// progress, and the publishing forms that talk to the JSON API.

import { clearErrors, csrfToken, messageOf, sendJson, showErrors } from "./http.js";
import { findWallet } from "./wallet.js";

const ANALYSING = new Set(["pending", "running"]);
const POLL_MS = 2000;
const TOKEN_DECIMALS = 6;

/** "25" -> "25000000", "1.5" -> "1500000" for a 6-decimal token, with string maths only. */
export function toBaseUnits(text, decimals = TOKEN_DECIMALS) {
  const value = String(text).trim().replace(/[\s_,]/g, "");
  const match = value.match(/^(\d*)(?:\.(\d*))?$/);
  if (!value || !match || (match[1] === "" && !match[2])) throw new Error("Give the price as a number, such as 25 or 12.5.");
  const frac = match[2] || "";
  if (frac.length > decimals) throw new Error(`USDC has ${decimals} decimals at most.`);
  const digits = ((match[1] || "") + frac.padEnd(decimals, "0")).replace(/^0+/, "");
  if (!digits) throw new Error("The price must be more than 0.");
  return digits;
}

// Catalog -----------------------------------------------------------------------------------------

function initCatalog(doc) {
  for (const form of doc.querySelectorAll("form[data-autosubmit]")) {
    for (const select of form.querySelectorAll("select")) {
      select.addEventListener("change", () => form.requestSubmit());
    }
    const apply = form.querySelector(".filter-apply");
    if (apply) apply.classList.add("is-secondary");
  }
  // On small screens the filters start folded so the results come first.
  const panel = doc.querySelector("[data-filters]");
  if (panel && window.matchMedia("(max-width: 860px)").matches) panel.open = false;
}

// Copy buttons ------------------------------------------------------------------------------------

function initCopy(doc) {
  for (const button of doc.querySelectorAll("[data-copy]")) {
    if (!navigator.clipboard) continue;
    button.hidden = false;
    button.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(button.dataset.copy);
        button.textContent = "Copied";
      } catch {
        button.textContent = "Copy failed";
      }
      setTimeout(() => { button.textContent = "Copy"; }, 1800);
    });
  }
}

// Analysis progress -------------------------------------------------------------------------------

function initAnalysisPoll(doc) {
  const panel = doc.querySelector("[data-analysis][data-poll-url]");
  if (!panel) return;
  const url = panel.dataset.pollUrl;
  const bar = panel.querySelector("[data-analysis-progress]");
  const label = panel.querySelector("[data-analysis-label]");
  const message = panel.querySelector("[data-analysis-message]");
  const poll = async () => {
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store" });
      if (response.ok) {
        const data = await response.json();
        const version = (data.versions || []).reduce((a, b) => (!a || b.number > a.number ? b : a), null);
        if (version && !ANALYSING.has(version.analysis_status)) {
          window.location.reload();
          return;
        }
        if (version) {
          const percent = Math.round(100 * (version.analysis_progress || 0));
          if (bar) bar.value = percent;
          if (label) label.textContent = version.analysis_status === "running" ? "Analysing" : "Waiting for analysis";
          if (message && version.analysis_message) {
            message.textContent = version.analysis_message.charAt(0).toUpperCase() + version.analysis_message.slice(1);
          }
        }
      }
    } catch {
      // A failed poll is retried on the next tick.
    }
    setTimeout(poll, POLL_MS);
  };
  setTimeout(poll, POLL_MS);
}

// Publishing forms --------------------------------------------------------------------------------

function datasetBody(form) {
  const value = (name) => {
    const input = form.querySelector(`[data-field="${name}"]`);
    return input ? input.value : undefined;
  };
  return {
    title: value("title").trim(),
    summary: value("summary").trim(),
    description: value("description"),
    category: value("category"),
    license: value("license"),
    tags: value("tags").split(",").map((t) => t.trim()).filter(Boolean),
  };
}

function initDatasetForms(doc) {
  for (const form of doc.querySelectorAll("form[data-dataset-form]")) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const submit = form.querySelector("[data-submit]");
      const body = datasetBody(form);
      if (!body.title) {
        showErrors(form, { error: { message: "Some fields are invalid.", fields: { title: ["Give the dataset a title."] } } });
        return;
      }
      if (!body.license) {
        showErrors(form, { error: { message: "Some fields are invalid.", fields: { license: ["Choose a license."] } } });
        return;
      }
      clearErrors(form);
      submit.disabled = true;
      const answer = await sendJson(form.dataset.method, form.dataset.url, body);
      const data = answer.data;
      submit.disabled = false;
      if (!answer.ok) {
        showErrors(form, data, answer.status);
        return;
      }
      if (form.dataset.method === "POST") {
        window.location.assign(`/me/datasets/${encodeURIComponent(data.slug)}/edit?created=1`);
      } else {
        window.location.assign(`${window.location.pathname}?saved=1`);
      }
    });
  }
}

function formatBytes(n) {
  if (n < 1024) return `${n} bytes`;
  const units = ["KB", "MB", "GB", "TB"];
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

function initUploadForms(doc) {
  for (const form of doc.querySelectorAll("form[data-upload-form]")) {
    const progress = form.querySelector("[data-upload-progress]");
    const bar = progress.querySelector("progress");
    const text = progress.querySelector("[data-upload-text]");
    const submit = form.querySelector("[data-submit]");
    const setProgress = (percent, words) => {
      bar.value = percent;
      text.textContent = words;
    };

    form.addEventListener("submit", (event) => {
      event.preventDefault();
      clearErrors(form);
      const file = form.querySelector('[data-field="file"]').files[0];
      const fields = {};
      if (!file) fields.file = ["Choose the file to upload."];
      let price = "";
      try {
        price = toBaseUnits(form.querySelector('[data-field="price"]').value);
      } catch (error) {
        fields.price = [error.message];
      }
      if (Object.keys(fields).length) {
        showErrors(form, { error: { message: "Some fields are invalid.", fields } });
        return;
      }
      const query = new URLSearchParams({ filename: file.name, price });
      if (form.dataset.token) query.set("token", form.dataset.token);
      for (const flag of ["show_sample", "show_distributions"]) {
        const box = form.querySelector(`[data-field="${flag}"]`);
        if (box) query.set(flag, box.checked ? "true" : "false");
      }
      const hidden = form.querySelector('[data-field="hidden_columns"]');
      if (hidden && hidden.value.trim()) query.set("hidden_columns", hidden.value.trim());
      const xhr = new XMLHttpRequest();
      xhr.open("POST", `${form.dataset.url}?${query}`);
      xhr.setRequestHeader("X-CSRFToken", csrfToken());
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.setRequestHeader("Accept", "application/json");
      xhr.responseType = "json";
      xhr.upload.addEventListener("progress", (e) => {
        if (!e.lengthComputable) return;
        const percent = Math.round((100 * e.loaded) / e.total);
        setProgress(percent, `Uploading… ${formatBytes(e.loaded)} of ${formatBytes(e.total)} (${percent}%)`);
      });
      xhr.upload.addEventListener("load", () => setProgress(100, "Upload sent; the server is hashing and storing the file…"));
      xhr.addEventListener("load", () => {
        submit.disabled = false;
        if (xhr.status >= 200 && xhr.status < 300) {
          setProgress(100, "Upload complete.");
          progress.dataset.state = "done";
          window.location.assign(`${window.location.pathname}?uploaded=1`);
        } else {
          progress.hidden = true;
          showErrors(form, xhr.response, xhr.status);
        }
      });
      xhr.addEventListener("error", () => {
        submit.disabled = false;
        progress.hidden = true;
        showErrors(form, null, 0);
      });
      submit.disabled = true;
      progress.hidden = false;
      progress.dataset.state = "uploading";
      setProgress(0, `Uploading ${file.name} (${formatBytes(file.size)})…`);
      xhr.send(file);
    });
  }
}

// Sign-in prompt ----------------------------------------------------------------------------------

function initSignInPrompt(doc) {
  const prompt = doc.querySelector("[data-sign-in-button]");
  const header = doc.querySelector("[data-wallet-button]");
  if (prompt && header) {
    prompt.disabled = false;
    prompt.addEventListener("click", () => header.click());
  }
  // Pages whose content depends on who is signed in follow a sign-in or sign-out.
  document.addEventListener("wallet:change", () => {
    if (doc.querySelector("[data-reload-on-sign-in], [data-my-datasets], [data-edit-page], [data-profile-page]")) {
      window.location.reload();
    }
  });
}

// Transactions from the owner's wallet ------------------------------------------------------------

/** Send `transaction` (prepared by the server) from the wallet, then POST its hash to `url` until
 *  the server's chain indexer has read it: 409 `not_mined` while it is not mined, 202 with the
 *  confirmations so far while its block waits for them. `say` reports progress in words. Returns
 *  the server's answer. */
async function sendFromWallet(wallet, transaction, url, say) {
  const accounts = await wallet.provider.request({ method: "eth_requestAccounts" });
  say("Confirm the transaction in your wallet…");
  const txHash = await wallet.provider.request({
    method: "eth_sendTransaction",
    params: [{ from: accounts[0], to: transaction.to, data: transaction.data }],
  });
  say("Waiting for the transaction to be mined…");
  const deadline = Date.now() + 5 * 60 * 1000;
  while (Date.now() < deadline) {
    const answer = await sendJson("POST", url, { tx_hash: txHash });
    if (answer.status === 202 && answer.data) {
      say(`Waiting for confirmations (${answer.data.confirmations} of ${answer.data.needed})…`);
    } else if (answer.ok) {
      return answer.data;
    } else if (answer.status !== 409 || (answer.data && answer.data.error && answer.data.error.code !== "not_mined")) {
      throw new Error(messageOf(answer.data, answer.status));
    }
    // Every 3 s for 5 minutes: at most 100 posts, within the wallet's listing_receipt limit.
    await new Promise((resolve) => setTimeout(resolve, 3000));
  }
  throw new Error("The transaction was not confirmed within five minutes; reload the page to try again.");
}

// Listing a version on-chain from the owner's wallet ------------------------------------------------
// The server prepares the createListing transaction; the wallet sends it; the server's chain indexer
// then links the listing (409 while it is not mined, 202 until its confirmations) and a moderator
// reviews it.

function initListButtons(doc) {
  doc.querySelectorAll("[data-list-version]").forEach((button) => {
    const status = button.parentElement.querySelector("[data-list-status]");
    const say = (text) => { if (status) status.textContent = text; };
    button.addEventListener("click", async () => {
      const wallet = findWallet();
      if (!wallet) { say("No wallet found in this browser."); return; }
      button.disabled = true;
      try {
        say("Preparing…");
        const prepared = await fetch(button.dataset.url + "/prepare", { credentials: "same-origin" });
        const plan = await prepared.json().catch(() => null);
        if (!prepared.ok) throw new Error(messageOf(plan, prepared.status));
        await sendFromWallet(wallet, plan.transaction, button.dataset.url, say);
        window.location.reload();
      } catch (error) {
        say(error && error.code === 4001 ? "Cancelled in the wallet." : (error && error.message) || String(error));
        button.disabled = false;
      }
    });
  });
}

// Changing a listed version's price from the owner's wallet -------------------------------------------
// The chain holds the price: the server prepares updateListing, the wallet sends it, and the server's
// chain indexer reads the new price from its ListingUpdated (409 while it is not mined, 202 until
// its confirmations).

function initPriceForms(doc) {
  doc.querySelectorAll("form[data-price-form]").forEach((form) => {
    const status = form.querySelector("[data-price-status]");
    const submit = form.querySelector("[data-submit]");
    const say = (text) => { status.textContent = text; };
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearErrors(form);
      say("");
      let price;
      try {
        price = toBaseUnits(form.querySelector('[data-field="price"]').value);
      } catch (error) {
        showErrors(form, { error: { message: "Some fields are invalid.", fields: { price: [error.message] } } });
        return;
      }
      const wallet = findWallet();
      if (!wallet) {
        showErrors(form, { error: { message: "No wallet found in this browser: the price is changed from the listing owner's wallet." } });
        return;
      }
      submit.disabled = true;
      try {
        say("Preparing…");
        const prepared = await sendJson("POST", `${form.dataset.url}/prepare`, { price });
        if (!prepared.ok) {
          say("");
          showErrors(form, prepared.data, prepared.status);
          return;
        }
        await sendFromWallet(wallet, prepared.data.transaction, form.dataset.url, say);
        say("Price changed.");
        const number = form.closest("[data-version]").dataset.version;
        window.location.assign(`${window.location.pathname}?repriced=${encodeURIComponent(number)}`);
      } catch (error) {
        say("");
        const message = error && error.code === 4001 ? "Cancelled in the wallet." : (error && error.message) || String(error);
        showErrors(form, { error: { message } });
      } finally {
        submit.disabled = false;
      }
    });
  });
}

// What buyers see of a version: the owner ticks columns, sample rows and distributions; the sample
// table greys out the columns that would be hidden, so the publisher sees exactly what will show.

function initPreviewForms(doc) {
  doc.querySelectorAll("form[data-preview-form]").forEach((form) => {
    const submit = form.querySelector("[data-submit]");
    const sample = form.querySelector("[data-preview-sample]");
    const sampleBox = form.querySelector('[data-field="show_sample"]');
    const refresh = () => {
      if (!sample) return;
      sample.hidden = sampleBox && !sampleBox.checked;
      form.querySelectorAll("[data-column]").forEach((box) => {
        sample.querySelectorAll(`[data-sample-column="${CSS.escape(box.dataset.column)}"]`).forEach((cell) => {
          cell.hidden = !box.checked;
        });
      });
    };
    form.addEventListener("change", refresh);
    refresh();
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearErrors(form);
      const body = {
        hidden_columns: [...form.querySelectorAll("[data-column]")].filter((box) => !box.checked).map((box) => box.dataset.column),
        show_sample: Boolean(sampleBox && sampleBox.checked),
        show_distributions: Boolean(form.querySelector('[data-field="show_distributions"]').checked),
      };
      submit.disabled = true;
      const answer = await sendJson("PATCH", form.dataset.url, body);
      submit.disabled = false;
      if (!answer.ok) {
        showErrors(form, answer.data, answer.status);
        return;
      }
      window.location.assign(`${window.location.pathname}?previewed=${answer.data.waiting ? "waiting" : "1"}`);
    });
  });
}

// Stopping or resuming the sale of a version: the owner's wallet sends setListingActive and the
// server's chain indexer reads its ListingActiveSet.

function initActiveButtons(doc) {
  doc.querySelectorAll("[data-set-active]").forEach((button) => {
    const status = button.parentElement.querySelector("[data-active-status]");
    const say = (text) => { if (status) status.textContent = text; };
    button.addEventListener("click", async () => {
      const wallet = findWallet();
      if (!wallet) { say("No wallet found in this browser."); return; }
      button.disabled = true;
      try {
        say("Preparing…");
        const prepared = await sendJson("POST", `${button.dataset.url}/prepare`, { active: button.dataset.setActive === "true" });
        if (!prepared.ok) throw new Error(messageOf(prepared.data, prepared.status));
        await sendFromWallet(wallet, prepared.data.transaction, button.dataset.url, say);
        window.location.reload();
      } catch (error) {
        say(error && error.code === 4001 ? "Cancelled in the wallet." : (error && error.message) || String(error));
        button.disabled = false;
      }
    });
  });
}

// Profile: display name and avatar ----------------------------------------------------------------

function initProfileForms(doc) {
  const nameForm = doc.querySelector("form[data-profile-form]");
  if (nameForm) {
    nameForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearErrors(nameForm);
      const submit = nameForm.querySelector("[data-submit]");
      submit.disabled = true;
      const displayName = nameForm.querySelector('[data-field="display_name"]').value.trim();
      const answer = await sendJson("PATCH", nameForm.dataset.url, { display_name: displayName });
      submit.disabled = false;
      if (!answer.ok) {
        showErrors(nameForm, answer.data, answer.status);
        return;
      }
      window.location.assign(`${window.location.pathname}?saved=1`);
    });
  }

  const form = doc.querySelector("form[data-avatar-form]");
  if (!form) return;
  const status = form.querySelector("[data-avatar-status]");
  const submit = form.querySelector("[data-submit]");
  const request = async (method, body) => {
    let response;
    try {
      response = await fetch(form.dataset.url, {
        method,
        credentials: "same-origin",
        headers: { Accept: "application/json", "X-CSRFToken": csrfToken(), "Content-Type": "application/octet-stream" },
        body,
      });
    } catch {
      return { ok: false, status: 0, data: null };
    }
    return { ok: response.ok, status: response.status, data: await response.json().catch(() => null) };
  };
  const done = (answer) => {
    status.textContent = "";
    submit.disabled = false;
    if (!answer.ok) {
      showErrors(form, answer.data, answer.status);
      return;
    }
    window.location.assign(`${window.location.pathname}?saved=1`);
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const file = form.querySelector('[data-field="avatar"]').files[0];
    const max = Number(form.dataset.maxBytes);
    let problem = "";
    if (!file) problem = "Choose an image first.";
    else if (max && file.size > max) problem = `The image is ${formatBytes(file.size)}; avatars are at most ${formatBytes(max)}.`;
    if (problem) {
      showErrors(form, { error: { message: "Some fields are invalid.", fields: { avatar: [problem] } } });
      return;
    }
    submit.disabled = true;
    status.textContent = "Uploading…";
    done(await request("PUT", file));
  });

  const remove = form.querySelector("[data-avatar-remove]");
  if (remove) {
    remove.addEventListener("click", async () => {
      clearErrors(form);
      status.textContent = "Removing…";
      done(await request("DELETE"));
    });
  }
}

export function initPages(doc) {
  initProfileForms(doc);
  initListButtons(doc);
  initPriceForms(doc);
  initPreviewForms(doc);
  initActiveButtons(doc);
  initCatalog(doc);
  initCopy(doc);
  initAnalysisPoll(doc);
  initDatasetForms(doc);
  initUploadForms(doc);
  initSignInPrompt(doc);
}
