// Live updates without reloads: the server says "change" over server-sent events, and every
// [data-live] region re-renders itself from the same page's ?fragment=1. A region the operator is
// filling in (a reviewer's name and note) is left alone until they leave it, so nothing typed is
// lost to an update.
(function () {
  const regions = document.querySelectorAll("[data-live]");
  const badge = document.getElementById("live");
  if (!regions.length || !window.EventSource) return;
  let busy = false, again = false, held = false;
  function editing(el) {
    const active = document.activeElement;
    if (active && el.contains(active) && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName)) return true;
    return Array.from(el.querySelectorAll("input, textarea")).some(function (field) {
      return field.type !== "hidden" && field.value !== field.defaultValue;
    });
  }
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
        regions.forEach(function (el) {
          if (editing(el)) { held = true; return; }
          el.innerHTML = html;
        });
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
  // Leaving a field brings a held update in (unless something typed is still there).
  document.addEventListener("focusout", function () {
    if (held) { held = false; setTimeout(refresh, 0); }
  });
})();

// Review previews are blurred until the reviewer chooses to look (and can blur them again).
document.addEventListener("click", function (event) {
  const figure = event.target.closest && event.target.closest("[data-reveal]");
  if (!figure) return;
  figure.classList.toggle("blurred");
  const caption = figure.querySelector("figcaption");
  if (caption) caption.textContent = figure.classList.contains("blurred") ? "blurred: click to show" : "click to blur";
});
