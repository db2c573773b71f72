// How statuses, progress and times read on the page.

// Every status has a colour, an icon of its own shape and its name: never colour alone.
export const STATUSES = {
  queued: { icon: "\u25F7", label: "queued" }, // a clock face
  running: { icon: "\u25B6", label: "running" }, // a play triangle
  succeeded: { icon: "\u2714", label: "succeeded" }, // a check mark
  failed: { icon: "\u2716", label: "failed" }, // a cross
  cancelled: { icon: "\u2298", label: "cancelled" }, // a slashed circle
};

export const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);

export function badge(status) {
  const meta = STATUSES[status] ?? { icon: "?", label: status };
  const element = document.createElement("span");
  element.className = "badge";
  const icon = document.createElement("span");
  icon.className = "badge-icon";
  icon.setAttribute("aria-hidden", "true");
  const label = document.createElement("span");
  label.className = "badge-label";
  element.append(icon, label);
  setBadge(element, status, meta);
  return element;
}

export function setBadge(element, status, meta = STATUSES[status]) {
  element.dataset.status = status;
  element.firstChild.textContent = meta?.icon ?? "?";
  element.lastChild.textContent = meta?.label ?? status;
}

/** A progress bar: a track with a fill, announced as a progressbar. */
export function progressBar() {
  const bar = document.createElement("div");
  bar.className = "bar";
  bar.setAttribute("role", "progressbar");
  bar.setAttribute("aria-valuemin", "0");
  bar.setAttribute("aria-valuemax", "100");
  const fill = document.createElement("div");
  fill.className = "bar-fill";
  const text = document.createElement("span");
  text.className = "bar-text";
  bar.append(fill, text);
  return bar;
}

/** The percent a job has done: from its progress, or 100 once it succeeded. */
export function percentOf(job) {
  if (job.status === "succeeded") return 100;
  const percent = job.progress?.percent;
  return typeof percent === "number" ? Math.max(0, Math.min(100, percent)) : null;
}

export function setProgress(bar, job) {
  const percent = percentOf(job);
  const text = percent === null ? (job.status === "running" ? "running" : "\u2013") : `${Math.floor(percent)}%`;
  if (bar.dataset.percent !== String(percent)) {
    bar.dataset.percent = String(percent);
    bar.firstChild.style.clipPath = `inset(0 ${100 - (percent ?? 0)}% 0 0)`;
    if (percent === null) bar.removeAttribute("aria-valuenow");
    else bar.setAttribute("aria-valuenow", String(Math.floor(percent)));
  }
  bar.dataset.status = job.status;
  const message = job.progress?.message;
  const label = message ? `${text} ${message}` : text;
  if (bar.lastChild.textContent !== text) bar.lastChild.textContent = text;
  if (bar.getAttribute("aria-valuetext") !== label) bar.setAttribute("aria-valuetext", label);
}

export function seconds(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "\u2013";
  const total = Math.max(0, Math.round(value));
  if (total < 60) return `${total}s`;
  const minutes = Math.floor(total / 60);
  if (minutes < 60) return `${minutes}m ${String(total % 60).padStart(2, "0")}s`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours}h ${String(minutes % 60).padStart(2, "0")}m`;
  return `${Math.floor(hours / 24)}d`;
}

export function time(iso) {
  if (!iso) return "\u2013";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

export function shortId(id) {
  return id.slice(0, 8);
}

/** Age since creation and run time (so far, or in all), in seconds. */
export function timings(job, now) {
  const created = Date.parse(job.created_at);
  const started = job.started_at ? Date.parse(job.started_at) : null;
  const finished = job.finished_at ? Date.parse(job.finished_at) : null;
  const end = finished ?? (TERMINAL.has(job.status) ? null : now);
  return {
    age: (now - created) / 1000,
    duration: started === null || end === null ? null : (end - started) / 1000,
  };
}

export function json(value) {
  return JSON.stringify(value, null, 2);
}
