// Requests to the site's JSON API, and its errors shown in forms ({"error": {code, message, fields}}).

export function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

export function messageOf(data, status) {
  const error = data && data.error;
  if (error && error.message) return error.message;
  if (status === 413) return "The file is larger than the server accepts.";
  return status ? `The server answered ${status}.` : "The network failed; check the connection and try again.";
}

/** `{ok, status, data}`; a network failure is status 0. */
export async function sendJson(method, url, body) {
  let response;
  try {
    response = await fetch(url, {
      method,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrfToken() },
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch {
    return { ok: false, status: 0, data: null };
  }
  const data = await response.json().catch(() => null);
  return { ok: response.ok, status: response.status, data };
}

function fieldMessages(value) {
  if (Array.isArray(value)) return value.map((v) => (typeof v === "string" ? v : JSON.stringify(v))).join(" ");
  if (value && typeof value === "object") return Object.values(value).map(fieldMessages).join(" ");
  return String(value);
}

export function showErrors(form, data, status) {
  clearErrors(form);
  const box = form.querySelector("[data-form-error]");
  const fields = (data && data.error && data.error.fields) || {};
  const unplaced = [];
  for (const name of Object.keys(fields)) {
    const messages = fields[name];
    const slot = form.querySelector(`[data-error-for="${name}"]`);
    const text = fieldMessages(messages);
    if (slot) {
      slot.textContent = text;
      slot.hidden = false;
      const input = form.querySelector(`[data-field="${name}"]`);
      if (input) {
        input.classList.add("is-invalid");
        input.setAttribute("aria-invalid", "true");
      }
    } else {
      unplaced.push(`${name}: ${text}`);
    }
  }
  if (box) {
    box.textContent = [messageOf(data, status), ...unplaced].join(" ");
    box.hidden = false;
  }
  const first = form.querySelector(".is-invalid");
  if (first) first.focus();
}

export function clearErrors(form) {
  for (const slot of form.querySelectorAll("[data-error-for]")) {
    slot.hidden = true;
    slot.textContent = "";
  }
  for (const input of form.querySelectorAll(".is-invalid")) {
    input.classList.remove("is-invalid");
    input.removeAttribute("aria-invalid");
  }
  const box = form.querySelector("[data-form-error]");
  if (box) box.hidden = true;
}
