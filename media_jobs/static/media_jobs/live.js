/* TOQ media portal: PENDING and RUNNING jobs update in place - the jobs list's rows, the job
   page's summary and step timeline, the dashboard's counts - by polling the portal's JSON
   status view (staff only). Polling stops once nothing is running; without script the pages
   are what the server rendered. No dependencies. */
(function () {
  "use strict";

  var ACTIVE = { PENDING: true, RUNNING: true };
  var FIRST_DELAY_MS = 2000;
  var MAX_DELAY_MS = 15000;

  function getJson(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.json();
      });
  }

  /* Call step() every few seconds (longer after an error, or while nothing changes) until
     it returns false. */
  function poll(step) {
    var delay = FIRST_DELAY_MS;
    function tick() {
      step().then(function (again) {
        if (again === false) {
          return;
        }
        delay = Math.min(delay + 500, MAX_DELAY_MS / 2);
        window.setTimeout(tick, delay);
      }).catch(function () {
        delay = Math.min(delay * 2, MAX_DELAY_MS);
        window.setTimeout(tick, delay);
      });
    }
    window.setTimeout(tick, delay);
  }

  function refreshCopyButtons(root) {
    if (window.toqShowCopyButtons) {
      window.toqShowCopyButtons(root);
    }
  }

  /* The jobs list: the cells of the PENDING/RUNNING rows. */
  function liveList(container) {
    var base = container.getAttribute("data-live-url");
    var rows = {};
    document.querySelectorAll("#result_list .toq-live[data-job]").forEach(function (marker) {
      if (ACTIVE[marker.getAttribute("data-status")]) {
        rows[marker.getAttribute("data-job")] = marker.closest("tr");
      }
    });
    if (!Object.keys(rows).length) {
      return;
    }
    poll(function () {
      var ids = Object.keys(rows);
      return getJson(base + "?ids=" + ids.join(",")).then(function (data) {
        var jobs = data.jobs || {};
        ids.forEach(function (id) {
          var job = jobs[id];
          var row = rows[id];
          if (!job || !row) {
            return;
          }
          Object.keys(job.cells || {}).forEach(function (name) {
            var cell = row.querySelector("td.field-" + name);
            if (cell && cell.innerHTML !== job.cells[name]) {
              cell.innerHTML = job.cells[name];
            }
          });
          row.setAttribute("data-live-status", job.status);
          if (job.terminal) {
            delete rows[id];
          }
        });
        return Object.keys(rows).length > 0;
      });
    });
  }

  /* The job page: its summary fields, and the timeline when it grew. */
  function liveJob(container) {
    if (!ACTIVE[container.getAttribute("data-status")]) {
      return;
    }
    var base = container.getAttribute("data-live-url");
    var id = container.getAttribute("data-job");
    poll(function () {
      var url = base + "&events=" + encodeURIComponent(container.getAttribute("data-events"));
      return getJson(url).then(function (data) {
        var job = (data.jobs || {})[id];
        if (!job) {
          return true;
        }
        Object.keys(job.fields || {}).forEach(function (name) {
          // A line of several fields names each box; a line of one names the row.
          var field = document.querySelector(".fieldBox.field-" + name + " .readonly") ||
            document.querySelector(".form-row.field-" + name + " .readonly");
          if (field && field.innerHTML !== job.fields[name]) {
            field.innerHTML = job.fields[name];
            refreshCopyButtons(field);
          }
        });
        if (job.timeline !== undefined) {
          var body = document.getElementById("toq-timeline-body");
          if (body) {
            body.innerHTML = job.timeline;
          }
        }
        container.setAttribute("data-events", job.events);
        container.setAttribute("data-status", job.status);
        return !job.terminal;
      });
    });
  }

  /* The dashboard: counts by status, stuck, unresolved, undelivered, queue depth. */
  function liveDashboard(section) {
    if (!(parseInt(section.getAttribute("data-active"), 10) > 0)) {
      return;
    }
    var note = section.querySelector(".toq-live-note");
    if (note) {
      note.hidden = false;
    }
    function setLink(id, text) {
      var target = document.querySelector("#" + id + " a") || document.getElementById(id);
      if (target && text !== undefined && target.textContent !== String(text)) {
        target.textContent = text;
      }
    }
    poll(function () {
      return getJson(section.getAttribute("data-live-url")).then(function (data) {
        var figures = data.dashboard || {};
        Object.keys(figures.status || {}).forEach(function (status) {
          var row = section.querySelector('#toq-status-table tr[data-status="' + status + '"]');
          if (row) {
            row.querySelector(".toq-count-24h").textContent = figures.status[status][0];
            row.querySelector(".toq-count-7d").textContent = figures.status[status][1];
          }
        });
        setLink("toq-stuck-count", figures.stuck);
        setLink("toq-unresolved-count", figures.unresolved);
        setLink("toq-undelivered-count", figures.undelivered);
        if (figures.queue !== "" && figures.queue !== undefined) {
          setLink("toq-queue-depth", figures.queue);
        }
        section.setAttribute("data-active", figures.active);
        if (!(figures.active > 0) && note) {
          note.hidden = true;
        }
        return figures.active > 0;
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (!window.fetch) {
      return;
    }
    var list = document.getElementById("toq-live-list");
    if (list) {
      liveList(list);
    }
    var job = document.getElementById("toq-live-job");
    if (job) {
      liveJob(job);
    }
    var dashboard = document.getElementById("toq-dashboard");
    if (dashboard) {
      liveDashboard(dashboard);
    }
  });
})();
