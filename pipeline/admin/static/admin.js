// Live updates without reloads: the server says "change" over server-sent events, and every
// [data-live] region re-renders itself from the same page's ?fragment=1.
(function () {
  const regions = document.querySelectorAll("[data-live]");
  const badge = document.getElementById("live");
  if (!regions.length || !window.EventSource) return;
  let busy = false, again = false;
  async function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    try {
      const url = new URL(window.location.href);
      url.searchParams.set("fragment", "1");
      url.searchParams.delete("flash");
      const response = await fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } });
      if (response.ok) {
        const html = await response.text();
        regions.forEach(function (el) { el.innerHTML = html; });
      }
    } finally {
      busy = false;
      if (again) { again = false; refresh(); }
    }
  }
  const source = new EventSource("/admin/stream");
  source.addEventListener("open", function () { if (badge) badge.classList.add("on"); });
  source.addEventListener("error", function () { if (badge) badge.classList.remove("on"); });
  source.addEventListener("change", refresh);
})();

// Review previews are blurred until the reviewer chooses to look (and can blur them again).
document.addEventListener("click", function (event) {
  const figure = event.target.closest && event.target.closest("[data-reveal]");
  if (!figure) return;
  figure.classList.toggle("blurred");
  const caption = figure.querySelector("figcaption");
  if (caption) caption.textContent = figure.classList.contains("blurred") ? "blurred: click to show" : "click to blur";
});
