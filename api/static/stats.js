// The summary strip: jobs by status, queue depth, workers alive (GET /stats).

import { STATUSES } from "./format.js";

export function renderStats(list, link, stats) {
  const items = Object.entries(STATUSES).map(([status, meta]) =>
    item(meta.label, stats.jobs[status] ?? 0, { status, icon: meta.icon }),
  );
  items.push(
    item("queue depth", stats.queue_depth ?? "?", { name: "queue" }),
    item("workers alive", stats.workers_alive ?? "?", {
      name: "workers",
      warn: stats.workers_alive === 0,
    }),
  );
  list.replaceChildren(...items);
  link.href = stats.flower_url;
  link.hidden = false;
}

export function statsUnavailable(list, message) {
  const li = document.createElement("li");
  li.className = "stat muted";
  li.textContent = message;
  list.replaceChildren(li);
}

function item(label, value, { status, icon, name, warn = false }) {
  const li = document.createElement("li");
  li.className = "stat";
  if (status) li.dataset.status = status;
  if (name) li.dataset.stat = name;
  if (warn) li.dataset.warn = "true";
  if (icon) {
    const mark = document.createElement("span");
    mark.className = "badge-icon";
    mark.setAttribute("aria-hidden", "true");
    mark.textContent = icon;
    li.append(mark);
  }
  const number = document.createElement("strong");
  number.className = "stat-value";
  number.textContent = String(value);
  const text = document.createElement("span");
  text.className = "stat-label";
  text.textContent = ` ${label}`;
  li.append(number, text);
  return li;
}
