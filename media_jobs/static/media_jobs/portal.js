/* TOQ media portal: loads server-rendered fragments (storage check, Step Functions history)
   into the page on demand. No dependencies; the fragments are escaped HTML from the portal. */
(function () {
  "use strict";

  // Texts in the page's language: base_site.html renders them as <meta name="toq-text-...">.
  function text(name, fallback) {
    var meta = document.querySelector('meta[name="toq-text-' + name + '"]');
    return meta ? meta.getAttribute("content") : fallback;
  }

  function load(container) {
    var url = container.getAttribute("data-fragment-url");
    if (!url || container.getAttribute("data-loading") === "1") {
      return;
    }
    container.setAttribute("data-loading", "1");
    var separator = url.indexOf("?") === -1 ? "?" : "&";
    var status = document.createElement("p");
    status.className = "toq-muted";
    status.textContent = text("loading", "Loading…");
    container.replaceChildren(status);
    fetch(url + separator + "fragment=1", { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        container.innerHTML = html;
        container.setAttribute("data-loaded", "1");
        showCopyButtons(container);
      })
      .catch(function (error) {
        var message = document.createElement("p");
        message.className = "errornote";
        message.textContent = text("load-failed", "Could not load:") + " " + error.message + ". ";
        var link = document.createElement("a");
        link.href = url;
        link.textContent = text("open-page", "Open it on its own page");
        message.appendChild(link);
        container.replaceChildren(message);
      })
      .finally(function () {
        container.removeAttribute("data-loading");
      });
  }

  // Copy buttons (ids, keys): hidden in the markup, shown here when the page can copy.
  function showCopyButtons(root) {
    if (!navigator.clipboard) {
      return;
    }
    root.querySelectorAll("button.toq-copy[hidden]").forEach(function (button) {
      button.hidden = false;
    });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button.toq-copy") : null;
    if (!button) {
      return;
    }
    event.preventDefault();
    navigator.clipboard.writeText(button.getAttribute("data-copy") || "").then(function () {
      button.setAttribute("data-copied", "1");
      window.setTimeout(function () { button.removeAttribute("data-copied"); }, 1500);
    });
  });

  window.toqShowCopyButtons = showCopyButtons;

  document.addEventListener("DOMContentLoaded", function () {
    showCopyButtons(document);
    document.querySelectorAll(".toq-fragment").forEach(function (container) {
      if (container.getAttribute("data-autoload") === "1") {
        load(container);
      }
      container.querySelectorAll(".toq-load").forEach(function (button) {
        button.addEventListener("click", function (event) {
          event.preventDefault();
          load(container);
        });
      });
    });
  });
})();
