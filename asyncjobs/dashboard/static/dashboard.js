// asyncjobs dashboard: live updates by server-sent events, and forms sent without a reload.
"use strict";
(function () {
  const body = document.body;
  let refreshing = false, again = false;

  async function refresh() {
    // One refresh at a time; events that come meanwhile make one more, not one each.
    if (refreshing) { again = true; return; }
    refreshing = true;
    try {
      do {
        again = false;
        const response = await fetch(location.href, { headers: { "X-Requested-With": "fetch" } });
        if (!response.ok) break;
        const page = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = page.getElementById("main");
        const main = document.getElementById("main");
        if (!fresh || !main) break;
        const checked = new Set([...main.querySelectorAll("input[name=ids]:checked")].map((i) => i.value));
        main.replaceChildren(...fresh.childNodes);
        main.querySelectorAll("input[name=ids]").forEach((i) => { i.checked = checked.has(i.value); });
        wire(main);
        body.dataset.refreshes = String(Number(body.dataset.refreshes || 0) + 1);
      } while (again);
    } finally {
      refreshing = false;
    }
  }

  function say(message, ok) {
    const flash = document.getElementById("flash");
    flash.textContent = message;
    flash.hidden = false;
    flash.classList.toggle("error", !ok);
  }

  function wire(root) {
    root.querySelectorAll("form[data-async]").forEach((form) => {
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
        const data = new URLSearchParams(new FormData(form));
        if (form.hasAttribute("data-selection")) {
          document.querySelectorAll("input[name=ids]:checked").forEach((i) => data.append("ids", i.value));
        }
        const response = await fetch(form.action, {
          method: "POST", body: data, headers: { "X-Requested-With": "fetch" },
        });
        let answer = { ok: response.ok, message: response.statusText };
        try { answer = await response.json(); } catch (e) { /* not JSON */ }
        say(answer.message, answer.ok);
        refresh();
      });
    });
    root.querySelectorAll("input[data-all]").forEach((all) => {
      all.addEventListener("change", () => {
        document.querySelectorAll("input[name=ids]").forEach((i) => { i.checked = all.checked; });
      });
    });
  }

  wire(document);
  const live = document.getElementById("live");
  const source = new EventSource(body.dataset.events);
  source.addEventListener("open", () => live.classList.add("on"));
  source.addEventListener("error", () => live.classList.remove("on"));
  source.addEventListener("change", (event) => {
    // What the last push was about ("jobs", "job" for this job's progress, ...): for tests.
    body.dataset.changed = event.data;
    refresh();
  });
})();
