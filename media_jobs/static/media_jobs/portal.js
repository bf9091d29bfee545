/* TOQ media portal: loads server-rendered fragments (storage check, Step Functions history)
   into the page on demand. No dependencies; the fragments are escaped HTML from the portal. */
(function () {
  "use strict";

  function load(container) {
    var url = container.getAttribute("data-fragment-url");
    if (!url || container.getAttribute("data-loading") === "1") {
      return;
    }
    container.setAttribute("data-loading", "1");
    var separator = url.indexOf("?") === -1 ? "?" : "&";
    var status = document.createElement("p");
    status.className = "toq-muted";
    status.textContent = "Loading…";
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
      })
      .catch(function (error) {
        var message = document.createElement("p");
        message.className = "errornote";
        message.textContent = "Could not load: " + error.message + ". ";
        var link = document.createElement("a");
        link.href = url;
        link.textContent = "Open it on its own page";
        message.appendChild(link);
        container.replaceChildren(message);
      })
      .finally(function () {
        container.removeAttribute("data-loading");
      });
  }

  document.addEventListener("DOMContentLoaded", function () {
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
